"""Smoothing over scan positions with a truncated Gaussian, zero outside the scan."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["gaussian_weights", "smooth_positions"]


def gaussian_weights(sigma: float) -> np.ndarray:
    """Return the ``(2 R + 1,)`` normalised Gaussian weights, ``R = ceil(3 sigma)``.

    Parameters
    ----------
    sigma
        Standard deviation in scan pixels (> 0).
    """
    radius = max(int(np.ceil(3.0 * sigma)), 1)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def smooth_positions(block: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Correlate ``block`` with ``weights`` along its first two axes (scan y, x), zeros outside.

    Parameters
    ----------
    block
        ``(scan_y, scan_x, ...)`` array.
    weights
        ``(2 R + 1,)`` symmetric weights, as :func:`gaussian_weights` gives.

    Returns
    -------
    numpy.ndarray
        float32 array of ``block``'s shape.
    """
    out = np.asarray(block, dtype=np.float32)
    for axis in (0, 1):
        out = ndimage.correlate1d(out, weights.astype(np.float32), axis=axis, mode="constant")
    return out
