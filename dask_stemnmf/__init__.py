"""dask_stemnmf: constrained NMF of 4D-STEM scans, out of core on Dask.

Public entry points (see ``DESIGN.md``): :func:`open_4dstem`, :func:`save_4dstem`,
:func:`simulate_scan`; the command line is ``stemnmf``.
"""

from ._version import __version__
from .centre import beam_centre
from .classify import classify
from .data import open_4dstem, save_4dstem
from .errors import InputError, OutputExistsError, StemNMFError, StemNMFWarning
from .evaluate import hole_depth, hole_depth_of_truth, match_to_truth, pattern_mixture
from .nmf import ConstrainedNMF, decompose, pca
from .similarity import rotational_similarity
from .simulate import simulate_scan

__all__ = [
    "ConstrainedNMF",
    "InputError",
    "OutputExistsError",
    "StemNMFError",
    "StemNMFWarning",
    "__version__",
    "beam_centre",
    "classify",
    "decompose",
    "hole_depth",
    "hole_depth_of_truth",
    "match_to_truth",
    "open_4dstem",
    "pattern_mixture",
    "pca",
    "rotational_similarity",
    "save_4dstem",
    "simulate_scan",
]
