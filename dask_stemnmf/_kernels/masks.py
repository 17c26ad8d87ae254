"""Detector masks: the bright-field disc found in the mean pattern."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["disc_mask", "find_bright_field_disc"]


def find_bright_field_disc(
    mean_pattern: np.ndarray, level: float = 0.5
) -> tuple[float, float, float]:
    """Centre and radius of the direct-beam disc in a mean diffraction pattern.

    The disc is the connected region above ``level`` times the maximum that holds the
    maximum; its centre is the intensity-weighted centroid (sub-pixel) and its radius that of
    a disc of the same area.

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
    weights = np.where(region, image, 0.0)
    yy, xx = np.indices(image.shape)
    cy = float((weights * yy).sum() / weights.sum())
    cx = float((weights * xx).sum() / weights.sum())
    return cy, cx, float(np.sqrt(region.sum() / np.pi))


def disc_mask(shape: tuple[int, int], cy: float, cx: float, radius: float) -> np.ndarray:
    """Boolean image, True inside the disc of ``radius`` pixels about ``(cy, cx)``."""
    yy, xx = np.indices(shape)
    return np.hypot(yy - cy, xx - cx) <= radius
