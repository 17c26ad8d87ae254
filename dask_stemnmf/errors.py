"""Errors and warnings raised by dask_stemnmf.

Every error meant for a user carries a one-line message that names the problem and the fix.
The command line prints that line alone (no traceback) and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "InputError",
    "OutputExistsError",
    "StemNMFError",
    "StemNMFWarning",
]


class StemNMFError(ValueError):
    """Base class of the errors that report bad input or a bad request, not a bug."""


class InputError(StemNMFError):
    """The input (a path, an array, a store) cannot be used as it is."""


class OutputExistsError(StemNMFError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class StemNMFWarning(UserWarning):
    """A note about the data that was fixed or needs attention (rechunking, bad values)."""


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at ``max_iter`` before meeting its tolerance."""
