"""The constrained NMF engine: statistics graphs, constraints, solvers and the estimator."""

from .model import ConstrainedNMF, decompose
from .pca import pca

__all__ = ["ConstrainedNMF", "decompose", "pca"]
