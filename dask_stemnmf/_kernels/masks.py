"""Detector masks: the bright-field disc found in the mean pattern."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "bright_field_extent",
    "disc_mask",
    "find_bright_field_disc",
    "pattern_centres",
    "radial_profile",
]


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


def radial_profile(
    image: np.ndarray, cy: float, cx: float, step: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal mean of an image about a centre, in rings ``step`` pixels wide.

    Only rings that lie wholly on the image (within the inscribed circle about the centre)
    are returned, so every value is a full azimuthal average.

    Parameters
    ----------
    image
        ``(k_y, k_x)`` image.
    cy, cx
        Centre in pixels.
    step
        Ring width in pixels.

    Returns
    -------
    radii : numpy.ndarray
        ``(n,)`` ring centres in pixels.
    profile : numpy.ndarray
        ``(n,)`` mean value in each ring.
    """
    yy, xx = np.indices(image.shape)
    r = np.hypot(yy - cy, xx - cx)
    edge = min(cy, cx, image.shape[0] - 1 - cy, image.shape[1] - 1 - cx)
    n = max(int(edge / step), 1)
    ring = np.minimum((r / step).astype(np.int64), n)
    sums = np.bincount(ring.ravel(), weights=np.asarray(image, np.float64).ravel(), minlength=n + 1)
    counts = np.bincount(ring.ravel(), minlength=n + 1)
    profile = sums[:n] / np.maximum(counts[:n], 1)
    return (np.arange(n) + 0.5) * step, profile


def bright_field_extent(
    mean_pattern: np.ndarray, cy: float, cx: float, radius: float, tolerance: float = 0.25
) -> float:
    """Radius out to which the direct beam's soft edge and tail outweigh the scattering.

    Real discs have soft edges (defocus, partial coherence) and every pixel detector adds a
    point-spread function with a long tail; the bright beam's tail then holds more counts,
    and more variance between positions, than the weak scattering beside it. Going outward
    from the half-maximum radius along the azimuthal mean, the tail ends where its excess
    over the scattered background (the profile's lowest value beyond the disc, before the
    first halo ring rises) falls to ``tolerance`` times that background.

    Parameters
    ----------
    mean_pattern
        ``(k_y, k_x)`` mean pattern (counts).
    cy, cx, radius
        Disc centre and half-maximum radius in pixels (:func:`find_bright_field_disc`).
    tolerance
        The tail's allowed excess over the background, relative to the background.

    Returns
    -------
    float
        The radius to mask, in pixels: at least ``radius + 1``, at most the profile's minimum
        beyond the disc and ``max(3 radius, radius + 2)``.
    """
    rings, profile = radial_profile(mean_pattern, cy, cx)
    lowest = radius + 1.0
    beyond = rings > radius
    if beyond.sum() < 2:
        return lowest
    r_out, p_out = rings[beyond], profile[beyond]
    # the background: the lowest point of the profile before it rises again (a halo ring)
    smooth = np.convolve(p_out, np.ones(3) / 3, mode="same")
    smooth[0], smooth[-1] = p_out[0], p_out[-1]
    i_min = int(np.argmin(smooth))
    background = max(float(smooth[i_min]), 0.0)
    limit = min(float(r_out[i_min]), max(3.0 * radius, radius + 2.0))
    above = smooth[: i_min + 1] - background > tolerance * background
    outside = np.flatnonzero(~above)
    edge = float(r_out[outside[0]]) if outside.size else float(r_out[i_min])
    return float(np.clip(edge, lowest, max(limit, lowest)))
