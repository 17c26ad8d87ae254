"""Detector masks: the bright-field disc found in the mean pattern."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["disc_mask", "find_bright_field_disc", "pattern_centres"]


def find_bright_field_disc(
    mean_pattern: np.ndarray, level: float = 0.5
) -> tuple[float, float, float]:
    """Centre and radius of the direct-beam disc in a mean diffraction pattern.

    The disc is the connected region above ``level`` times the maximum that holds the
    maximum; its radius is that of a disc of the same area, and its centre the
    intensity-weighted centroid of a window two pixels wider than the disc, iterated from the
    region's centroid (sub-pixel: a few hundredths of a pixel on noiseless simulated beams).

    Parameters
    ----------
    mean_pattern
        ``(k_y, k_x)`` mean pattern (counts).
    level
        Threshold as a fraction of the maximum.

    Returns
    -------
    tuple of float
        ``(centre_y, centre_x, radius)`` in pixels.
    """
    image = np.asarray(mean_pattern, dtype=np.float64)
    peak = image.max()
    if not peak > 0:
        raise ValueError("the mean pattern is all zero: no bright-field disc to find")
    labels, _ = ndimage.label(image >= level * peak)
    region = labels == labels[np.unravel_index(np.argmax(image), image.shape)]
    radius = float(np.sqrt(region.sum() / np.pi))
    yy, xx = np.indices(image.shape)
    weights = np.where(region, image, 0.0)
    cy = float((weights * yy).sum() / weights.sum())
    cx = float((weights * xx).sum() / weights.sum())
    # refine: the centroid of everything within a disc a little larger than the beam's, about
    # the first estimate (the disc's soft edge and the background are symmetric about the
    # centre, the thresholded region's pixel edges are not)
    for _ in range(3):
        window = np.hypot(yy - cy, xx - cx) <= radius + 2.0
        weights = np.where(window, image, 0.0)
        cy = float((weights * yy).sum() / weights.sum())
        cx = float((weights * xx).sum() / weights.sum())
    return cy, cx, radius


def disc_mask(shape: tuple[int, int], cy: float, cx: float, radius: float) -> np.ndarray:
    """Boolean image, True inside the disc of ``radius`` pixels about ``(cy, cx)``."""
    yy, xx = np.indices(shape)
    return np.hypot(yy - cy, xx - cx) <= radius


def pattern_centres(stack: np.ndarray, level: float = 0.5, empty: float = np.nan) -> np.ndarray:
    """Each pattern's own direct-beam centre (:func:`find_bright_field_disc`).

    Parameters
    ----------
    stack
        ``(P, k_y, k_x)`` patterns; negative values count as zero.
    level
        Threshold as a fraction of each pattern's maximum.
    empty
        The centre given to an all-zero pattern.

    Returns
    -------
    numpy.ndarray
        ``(P, 2)`` centres ``(y, x)`` in pixels.
    """
    out = np.full((stack.shape[0], 2), empty, dtype=np.float64)
    for i, pattern in enumerate(np.maximum(np.asarray(stack, dtype=np.float64), 0)):
        if pattern.max() > 0:
            out[i] = find_bright_field_disc(pattern, level)[:2]
    return out
