"""Diffraction continuity on the driver: counting noise and dip filling of all components."""

from __future__ import annotations

import numpy as np

from .._kernels.constraints import fill_dips
from .._kernels.spots import arc_pixels, bragg_spots, ring_level

__all__ = ["FOREIGN_FILL_STEP", "fill_all", "poisson_sigma"]

#: Share of a hole's depth at another component's spot raised per fill. On 12 scans of the
#: README's grid (both generators, 1,500-20,000 e/pattern, seeds 1 and 2), steps 1, 0.5,
#: 0.25 and 0.125: a quarter step had the best means of pattern cosine (0.887 against
#: 0.873 for a full step), map cosine (0.884 against 0.862) and ARI (0.76 against 0.69),
#: and a worst hole of 0.072 against 0.101 (README, "The step of the fill at other
#: components' spots"). A full step loses weak precipitates: started from the true
#: factors, a 1.6 nm precipitate of the kinematic scan at 20,000 e/pattern ended at
#: pattern / map cosine 0.60 / 0.19 with it and 0.75 / 0.96 with a quarter step.
FOREIGN_FILL_STEP = 0.25


def poisson_sigma(S: np.ndarray, h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Counting-noise standard deviation of each diffraction pixel, ``(M, K)``.

    For counts ``D ~ Poisson(C S^T)`` the least-squares estimate ``S_k ~ D^T c_k / |c_k|^2``
    has variance ``sum_i c_ik^2 (C S^T)_ij / |c_k|^4 = (S T)_jk / H_kk^2`` with
    ``T = C^T (C * C)``, both from the pass's statistics (``S`` in the scale of ``C``).
    """
    diag = np.maximum(np.diag(h), 1e-300)
    return np.sqrt(np.maximum(S @ t, 0.0)) / diag


def fill_all(
    S: np.ndarray,
    idx: np.ndarray,
    sig_shape: tuple[int, ...],
    radius: float,
    threshold: float,
    floor: np.ndarray,
    fraction: float,
    foreign: bool = True,
    centre: tuple[float, float] | None = None,
    foreign_step: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Fill every diffraction's dips deeper than ``max(threshold * peak, floor)``.

    Two fills, neither of which lowers a pixel:

    1. with ``foreign`` (2-D patterns), each diffraction's holes at the Bragg spots of
       *other* components are raised to its level on the same rings beside them: the
       paper's artefact is exactly a hole where another component owns a spot, and a
       closing small enough to keep real valleys between close discs cannot fill a hole a
       whole disc wide. Spots are isolated, compact maxima of each component's smoothed
       top-hat (:func:`dask_stemnmf._kernels.spots.bragg_spots`, disc radius ``2 radius``,
       above ``threshold`` of its peak and its smoothed noise floor); a spot within two
       disc radii of one of the component's own is its rim and is skipped. The level is
       the component's median ring by ring (whole-pixel distances from ``centre``, the
       beam centre) over the arcs beside the spot, 1.5-6 disc radii along, clear of every
       component's spots (of its own only, where that leaves too few pixels), so it follows
       a halo ring's radial profile. Each spot is judged whole: a hole when its mean depth
       below that level exceeds the mean floor over the square root of its pixel count
       (the noise of a mean), and then its pixels below the level are raised towards it
       by ``foreign_step`` (times ``fraction``) of their depth.
       Before (spots as every pixel whose raw top-hat exceeded the floor, the level a local
       average of the pixels no component claimed) the speckle of the amorphous and
       low-count components passed as spots, their union covered 70 % of the detector in
       one region on a kinematic scan at 20,000 e/pattern, and the worst hole there stayed
       at 0.21 (measured in the README, "The continuity fill at other components' spots");
    2. then a grey-scale closing with a disc of ``radius`` raises the narrow dips to the
       floor below it (:func:`dask_stemnmf._kernels.constraints.fill_dips`), last, so that
       no dip deeper than the floor is left whatever the first fill did.

    Masked pixels (zeros) only shape the closing; ``floor`` is ``(M, K)`` (noise per pixel).
    Without ``centre`` the detector's middle is taken for the beam centre.
    """
    m_full = int(np.prod(sig_shape))
    k = S.shape[1]
    images = np.zeros((k, m_full))
    levels = np.full((k, m_full), np.inf)
    noise = np.full((k, m_full), np.inf)
    heights = threshold * np.maximum(S.max(axis=0), 0.0) if S.size else np.zeros(k)
    for j in range(k):
        if heights[j] > 0:
            images[j, idx] = S[:, j]
            noise[j, idx] = floor[:, j]
            levels[j, idx] = np.maximum(heights[j], floor[:, j])
    total = 0
    if foreign and len(sig_shape) == 2 and k > 1:
        if centre is None:
            centre = ((sig_shape[0] - 1) / 2.0, (sig_shape[1] - 1) / 2.0)
        images, total = _fill_foreign(
            images, levels, noise, heights, idx, sig_shape, radius, foreign_step * fraction,
            centre,
        )
    # the closing's fill last: it leaves no dip deeper than the floor, whatever came before
    out = S.copy()
    for j in range(k):
        if not S[:, j].max() > 0:
            continue
        filled, _ = fill_dips(
            images[j].reshape(sig_shape), radius, levels[j].reshape(sig_shape), fraction
        )
        new = filled.reshape(-1)[idx]
        total += int((new > images[j, idx]).sum())
        out[:, j] = new
    return out, total


def _fill_foreign(
    images: np.ndarray,
    levels: np.ndarray,
    noise: np.ndarray,
    heights: np.ndarray,
    idx: np.ndarray,
    sig_shape: tuple[int, ...],
    radius: float,
    fraction: float,
    centre: tuple[float, float],
) -> tuple[np.ndarray, int]:
    """Raise each ``(K, M_full)`` image's holes at the other components' Bragg spots.

    Spots are :func:`~dask_stemnmf._kernels.spots.bragg_spots` of each component (disc
    radius ``2 radius``, least height ``heights``, ``(K,)``, per-pixel noise floor
    ``noise``, ``(K, M_full)``, beam ``centre`` in pixels). In image ``j``, every
    spot of another component, less ``j``'s own spots' rims, is judged whole: a hole when
    ``j``'s median on the rings beside it (ring by ring, clear of every spot) exceeds ``j``'s
    mean over the spot by more than the mean level over the square root of its pixel count;
    its pixels below that median are then raised to it.
    """
    k, m_full = images.shape
    valid = np.zeros(m_full, dtype=bool)
    valid[idx] = True
    valid_img = valid.reshape(sig_shape)
    disc = 2.0 * radius
    shaped = images.reshape(k, *sig_shape)
    noise_img = noise.reshape(k, *sig_shape)
    found = [
        bragg_spots(shaped[j], valid_img, noise_img[j], disc, float(heights[j])) for j in range(k)
    ]
    spots = [spots_j for spots_j, _ in found]
    centres, own = _centres_and_rims(spots, sig_shape, disc)
    anyone = own.any(axis=0)
    yy, xx = np.indices(sig_shape)
    polar = (np.hypot(yy - centre[0], xx - centre[1]), np.arctan2(yy - centre[0], xx - centre[1]))
    on_ring = np.rint(polar[0]).astype(np.int64).reshape(-1)
    target = np.zeros((k, m_full))
    for i in range(k):
        for spot_img, (cy, cx) in zip(spots[i], centres[i], strict=True):
            spot = np.flatnonzero(spot_img)
            ring = np.flatnonzero(arc_pixels(spot_img, valid_img, centre, disc, polar=polar))
            if ring.size < 3:  # nothing beside it on the detector
                continue
            # every component's level on the rings beside, clear of every spot; where that
            # leaves too few pixels, clear of each component's own
            clear = ring[~anyone[ring]]
            if clear.size >= 4 * max(np.ptp(on_ring[spot]), 1):
                beside_all = ring_level(images[:, clear], on_ring[clear], on_ring[spot])
            else:
                values = np.where(own[:, ring], np.nan, images[:, ring])
                beside_all = ring_level(values, on_ring[ring], on_ring[spot])
            # per component: a spot within two disc radii of one of its own is its rim, not
            # a hole; its pixels off its own spots, whose level on the rings is known
            near = np.array([
                c.size > 0 and np.hypot(*(c - (cy, cx)).T).min() < 2 * disc for c in centres
            ])  # fmt: skip
            near[i] = True
            known = ~own[:, spot] & np.isfinite(beside_all)
            n = known.sum(axis=1)
            counted = np.maximum(n, 1)
            values = images[:, spot]
            depth = np.where(known, beside_all - values, 0.0).sum(axis=1) / counted
            floor = np.where(known, levels[:, spot], 0.0).sum(axis=1) / counted
            hole = ~near & (n >= 3) & (depth > floor / np.sqrt(counted)) & images.any(axis=1)
            raise_to = np.where(hole[:, None] & known, beside_all, 0.0)
            target[:, spot] = np.maximum(target[:, spot], raise_to)
    raise_by = np.where(valid, np.maximum(target - images, 0.0), 0.0)
    out = images + fraction * raise_by
    total = int((raise_by > 0).sum())
    return out, total


def _centres_and_rims(
    spots: list[list[np.ndarray]], sig_shape: tuple[int, ...], disc: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each component's spot centres, ``(n_j, 2)`` pixels, and rims, ``(K, M_full)`` bool.

    A spot's rim is everything within 1.5 disc radii of its centre (its soft edge).
    """
    yy, xx = np.indices(sig_shape)
    rims = np.zeros((len(spots), *sig_shape), dtype=bool)
    centres = []
    for j, spots_j in enumerate(spots):
        at = np.array([(yy[spot].mean(), xx[spot].mean()) for spot in spots_j]).reshape(-1, 2)
        centres.append(at)
        for cy, cx in at:
            rims[j] |= np.hypot(yy - cy, xx - cx) <= 1.5 * disc
    return centres, rims.reshape(len(spots), -1)
