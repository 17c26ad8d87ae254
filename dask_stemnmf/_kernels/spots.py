"""Bragg spots of a diffraction and the level of its intensity beside them: pure functions.

The diffraction-continuity fill raises a component's holes where *other* components hold
Bragg spots. Two things decide how well it works, and both are here:

- which features are spots: isolated maxima of the top-hat of the pattern smoothed over
  about half a disc radius, significant against the smoothed counting noise. Taken pixel by pixel on
  the raw pattern instead, the speckle of an amorphous or low-count component passes the
  same test everywhere (measured on a kinematic scan at 20,000 e/pattern: the union of the
  components' "peaks" covered 70 % of the detector in one connected region, so the fill
  judged the whole detector as one hole);
- the level a hole is raised to: the component's median at the same scattering angle
  beside the spot (arcs of the rings through it, ring by ring), clear of every spot, so
  that it follows a halo ring's radial profile; the local average of the few pixels that
  no component claims is biased to the darkest ones.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .constraints import disc_footprint

__all__ = ["arc_pixels", "bragg_spots", "ring_level"]

#: Above half its height a spot is no longer, along its major axis, than this many disc
#: diameters (a segment of a halo ring between two holes is longer).
SPOT_ELONGATION = 1.5
#: A spot's top-hat, a disc diameter from its centre, stays below this share of its height
#: all around (a ridge of a halo ring, or speckle, does not).
ISOLATION = 0.5


def bragg_spots(
    pattern: np.ndarray,
    valid: np.ndarray,
    noise: np.ndarray,
    disc_radius_px: float,
    least_height: float,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Return a diffraction's Bragg spots: one ``(k_y, k_x)`` bool region per spot.

    The pattern and its per-pixel noise are smoothed by a normalised Gaussian of half the
    disc radius over the valid pixels. A spot is a local maximum of the smoothed pattern's
    white top-hat (disc of ``disc_radius_px``) above both ``least_height`` and the smoothed
    noise, around which the top-hat stays below ``ISOLATION`` of that height all along the
    circle one disc diameter away: a disc falls off in every direction, a ridge of a halo
    ring does not, and neither does speckle, whose maxima are as high as their neighbours;
    and above half its height it is compact (``SPOT_ELONGATION``). Its region is the disc
    of ``disc_radius_px + 1`` about the maximum.

    Parameters
    ----------
    pattern
        ``(k_y, k_x)`` non-negative diffraction (zeros at invalid pixels).
    valid
        ``(k_y, k_x)`` bool: the fitted pixels.
    noise
        ``(k_y, k_x)`` least height of a spot per pixel, in the pattern's units (e.g. 4 times
        the counting-noise standard deviation), before smoothing.
    disc_radius_px
        A Bragg disc's radius, pixels.
    least_height
        Least top-hat height, in the pattern's units (e.g. 2 % of its maximum).

    Returns
    -------
    spots : list of numpy.ndarray
        The spots, each ``(k_y, k_x)`` bool, highest first.
    bright : numpy.ndarray
        ``(k_y, k_x)`` bool: every pixel whose top-hat exceeds the level, grown by one pixel
        (all that the pattern holds above its surroundings, disc-like or not).
    """
    if not valid.any() or not pattern.max() > 0:
        return [], np.zeros(pattern.shape, dtype=bool)
    s = max(0.5 * disc_radius_px, 0.5)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), s, mode="constant")
    safe = np.maximum(weight, 1e-12)
    smooth = ndimage.gaussian_filter(np.where(valid, pattern, 0.0), s, mode="constant") / safe
    smooth = np.where(valid, smooth, 0.0)
    finite = np.where(valid & np.isfinite(noise), noise, 0.0)
    # averaging over ~4 pi s^2 pixels divides independent noise by 2 sqrt(pi) s
    shrink = max(2.0 * math.sqrt(math.pi) * s, 1.0)
    height = ndimage.gaussian_filter(finite, s, mode="constant") / safe / shrink
    level = np.where(valid, np.maximum(height, least_height), np.inf)
    footprint = disc_footprint(disc_radius_px)
    top = smooth - ndimage.grey_opening(smooth, footprint=footprint, mode="nearest")
    grow = ndimage.generate_binary_structure(2, 1)
    bright = ndimage.binary_dilation(top > level, grow) & valid
    tallest = ndimage.maximum_filter(top, footprint=footprint, mode="constant")
    maxima = np.argwhere((top >= tallest) & (top > level) & valid)
    w = int(math.ceil(2.0 * disc_radius_px + 2.0))  # a window about each maximum
    spots = []
    for cy, cx in sorted(maxima.tolist(), key=lambda p: -top[p[0], p[1]]):
        box = (
            slice(max(cy - w, 0), min(cy + w + 1, pattern.shape[0])),
            slice(max(cx - w, 0), min(cx + w + 1, pattern.shape[1])),
        )
        yy, xx = np.mgrid[box]
        away = np.hypot(yy - cy, xx - cx)
        near, peak = top[box], top[cy, cx]
        circle = valid[box] & (np.abs(away - 2.0 * disc_radius_px) <= 0.5)
        if circle.sum() < 4 or near[circle].max() >= ISOLATION * peak:
            continue
        # compact: above half its height it is no longer than SPOT_ELONGATION diameters
        labels, _ = ndimage.label(near > 0.5 * peak)
        py, px = np.nonzero(labels == labels[cy - box[0].start, cx - box[1].start])
        if py.size > 2:
            spread = float(np.linalg.eigvalsh(np.cov(py, px)).max())
            if 4.0 * math.sqrt(max(spread, 0.0)) > SPOT_ELONGATION * 2.0 * disc_radius_px:
                continue
        spot = np.zeros(pattern.shape, dtype=bool)
        spot[box] = valid[box] & (away <= disc_radius_px + 1.0)
        spots.append(spot)
    return spots, bright


def arc_pixels(
    spot: np.ndarray,
    valid: np.ndarray,
    centre: tuple[float, float],
    disc_radius_px: float,
    offsets: tuple[float, float] = (1.5, 6.0),
    polar: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Pixels of the band of rings through a spot, beside it: ``(k_y, k_x)`` bool.

    Those at the distances from ``centre`` that the spot covers (to half a pixel) and at
    arc lengths ``offsets`` (in disc radii) on either side of its centroid.

    Parameters
    ----------
    spot
        ``(k_y, k_x)`` bool region.
    valid
        ``(k_y, k_x)`` bool: pixels that may be used.
    centre
        Beam centre ``(y, x)``, pixels.
    disc_radius_px
        A Bragg disc's radius, pixels.
    offsets
        Least and largest arc length from the spot, in disc radii.
    polar
        The pixels' distance from ``centre`` and azimuth (radians), each ``(k_y, k_x)``, when
        computed once for many spots.
    """
    ys, xs = np.nonzero(spot)
    cy, cx = float(ys.mean()), float(xs.mean())
    r_spot = math.hypot(cy - centre[0], cx - centre[1])
    theta = math.atan2(cy - centre[0], cx - centre[1])
    if polar is None:
        yy, xx = np.indices(spot.shape)
        polar = (
            np.hypot(yy - centre[0], xx - centre[1]),
            np.arctan2(yy - centre[0], xx - centre[1]),
        )
    rho, phi = polar
    along = np.abs((phi - theta + np.pi) % (2.0 * np.pi) - np.pi) * r_spot
    return (
        valid
        & ~spot
        & (rho >= rho[spot].min() - 0.5)
        & (rho <= rho[spot].max() + 0.5)
        & (along >= offsets[0] * disc_radius_px)
        & (along <= offsets[1] * disc_radius_px)
    )


def ring_level(values: np.ndarray, rings: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Return the level on each ring from the pixels beside: a median per ring.

    Parameters
    ----------
    values
        ``(..., n)`` the images at the pixels beside (e.g. :func:`arc_pixels`); NaN for a
        pixel to leave out.
    rings
        ``(n,)`` int: their whole-pixel distance from the beam centre.
    at
        ``(m,)`` int: the whole-pixel distances of the pixels whose level is wanted.

    Returns
    -------
    numpy.ndarray
        ``(..., m)`` the median of ``values`` on the same ring, NaN where it has fewer than
        3 pixels (so a halo ring's radial profile is followed).
    """
    flat = values.reshape(int(np.prod(values.shape[:-1])), values.shape[-1])
    out = np.full((flat.shape[0], at.size), np.nan)
    rows = np.arange(flat.shape[0])
    for b in np.unique(at):
        on_ring = np.sort(flat[:, rings == b], axis=1)  # NaN last
        count = np.isfinite(on_ring).sum(axis=1)
        enough = count >= 3
        if not enough.any():
            continue
        c = np.maximum(count, 1)
        median = 0.5 * (on_ring[rows, (c - 1) // 2] + on_ring[rows, c // 2])
        out[:, at == b] = np.where(enough, median, np.nan)[:, None]
    return out.reshape(*values.shape[:-1], at.size)
