"""Classify a decomposition's components: crystalline or not, then by phase whatever the rotation.

The steps (``DESIGN.md`` section 5), all on the driver since a decomposition has tens of
components:

1. each diffraction's *crystallinity*: the share of its polar pattern's variance that lies
   along the azimuth (Bragg spots vary with angle; the amorphous halo and the direct beam do
   not), and its *significance*: how far that azimuthal variation, over about a Bragg disc,
   exceeds what the component's own counting noise gives (:func:`crystallinity_significance`;
   speckle alone gives a noisy halo a crystallinity of 0.5 and more). A component is
   crystalline when both clear their thresholds; the others are the direct beam (most of
   their intensity inside the bright-field disc) or amorphous;
2. the crystalline components' similarity: the best correlation over rotations of their
   Bragg spots alone (:func:`phase_similarity`: smoothed over a disc, each ring's mean
   removed, so that neither speckle nor the halo a component carries decides it),
   corrected for each component's counting noise (:func:`noise_corrected`), and
   hierarchical clustering of ``1 - rho`` (scipy; complete linkage by default), cut by
   distance, by number of classes, or by default in the largest relative gap between merge
   heights kept between ``min_distance`` (one phase is not split by noise) and
   ``max_distance`` (two similar phases are not merged), both 0.15 by default: a fixed
   cut, measured (:func:`cut_height`);
3. per class: the rotation-aligned mean diffraction, the class map (sum of the members'
   maps) and a precipitate table: the regions of each member's map around its blobs, where
   it exceeds ``region_threshold`` of the blob's peak, that cover at least a probe and
   whose summed intensity stands well above the map's noise (:func:`probe_area_px`,
   ``region_significance``); regions of one class that overlap, or touch as pieces of one
   crystal split between components, are one precipitate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr
from scipy import ndimage, signal
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from ._kernels.masks import disc_mask, find_bright_field_disc
from ._kernels.polar import (
    azimuthal_correlation_max,
    normalise_polar,
    polar_grid,
    polar_transform,
    rotate_pattern,
)
from .errors import InputError
from .similarity import polar_patterns

__all__ = [
    "classify",
    "crystallinity",
    "crystallinity_significance",
    "cut_height",
    "noise_corrected",
    "phase_similarity",
    "probe_area_px",
]

#: ``class_label`` of components that are not crystalline.
AMORPHOUS, DIRECT_BEAM = -1, -2

#: A blob of a member map is looked at when its peak reaches this share of the map's highest.
LOCAL_FLOOR = 0.2

#: Touching regions of one class are one precipitate when the class map dips less than this
#: share between their peaks.
SPLIT_DIP = 0.2

#: Two components see a crystal in the same orientation when their correlation without
#: rotation is at least this share of the best over rotations.
SAME_ORIENTATION = 0.8

#: A precipitate is another one seen through a mixture (a component holding a share of the
#: other's diffraction, so its map repeats the other's region, weaker) when the two regions
#: coincide (intersection over union at least :data:`SHARED_OVERLAP`) and its members hold
#: less than :data:`SHARED_COUNTS` of the other's counts there; of another class, or of the
#: same class seen in another orientation (regions of one class and orientation are joined
#: before). Two crystals stacked in the beam hold comparable counts where they coincide,
#: and a small one in front of a large one covers only a part of its region.
SHARED_OVERLAP, SHARED_COUNTS = 0.5, 0.5


def crystallinity(polar: np.ndarray) -> np.ndarray:
    """Share of each polar pattern's variance that lies along the azimuth.

    Parameters
    ----------
    polar
        ``(P, R, T)`` polar patterns.

    Returns
    -------
    numpy.ndarray
        ``(P,)`` in ``[0, 1]``: 0 for a rotationally symmetric pattern, near 1 for isolated
        spots; 0 for a flat pattern.
    """
    x = np.asarray(polar, dtype=np.float64)
    angular = np.sum(np.var(x, axis=2), axis=1)
    total = np.var(x, axis=(1, 2)) * x.shape[1]
    return np.where(total > 0, angular / np.where(total > 0, total, 1.0), 0.0)


def _sqrt_noise(
    patterns: np.ndarray, valid: np.ndarray, sigma: np.ndarray | None = None
) -> np.ndarray:
    """Return the standard deviation of the counting noise of ``sqrt(pattern)``, per pixel.

    The square root makes counting noise nearly uniform (``1 / (2 sqrt(N))`` for ``N``
    counts in a pattern that sums to 1), so one level per pattern describes it: measured as
    the robust (MAD) spread of the high-frequency residual, ``sqrt(x)`` less its 3 x 3 mean,
    over the fitted pixels that hold signal (a smooth pattern leaves only noise there; the
    edges of Bragg discs, a minority, barely move the median). With ``sigma`` (the fit's
    ``diffraction_sigma``) the level follows it pixel by pixel, ``sigma / (2 sqrt(x))`` by
    the delta method (``x`` smoothed a little and never below ``sigma``: under one count the
    square root's noise is ``sqrt(sigma) / 2``), scaled up to the measured level where the
    propagation claims less than the pattern shows (it did by half on the halo components
    of fits, whose noise the neighbouring components share).

    Parameters
    ----------
    patterns
        ``(P, k_y, k_x)`` patterns, each summing to 1.
    valid
        ``(k_y, k_x)`` bool, the fitted pixels.
    sigma
        ``(P, k_y, k_x)`` counting-noise standard deviation of each pixel, or ``None``.

    Returns
    -------
    numpy.ndarray
        ``(P, k_y, k_x)`` float64, 0 on pixels not fitted.
    """
    x = np.maximum(np.asarray(patterns, dtype=np.float64), 0.0)
    inner = ndimage.binary_erosion(valid, np.ones((3, 3), bool), border_value=0)
    measured = np.zeros(x.shape[0])
    for j, root in enumerate(np.sqrt(x)):
        local = ndimage.uniform_filter(root, 3, mode="nearest")
        use = inner & (local > 0)
        if use.sum() >= 16:
            # white noise less its 3 x 3 mean keeps 8/9 of its variance
            measured[j] = float(np.std((root - local)[use])) / np.sqrt(8.0 / 9.0)
    level = np.broadcast_to(measured[:, None, None], x.shape)
    if sigma is not None and valid.any():
        sg = np.maximum(np.asarray(sigma, dtype=np.float64), 0.0)
        smooth = ndimage.gaussian_filter(x, (0, 1.0, 1.0))
        propagated = sg / (2.0 * np.sqrt(np.maximum(smooth, np.maximum(sg, 1e-300))))
        typical = np.median(propagated[:, valid], axis=1)
        known = typical > 0
        scale = np.maximum(1.0, measured / np.where(known, typical, 1.0))
        level = np.where(known[:, None, None], propagated * scale[:, None, None], level)
    return np.where(valid, level, 0.0)


def smooth_within(images: np.ndarray, valid: np.ndarray, smooth_px: float) -> np.ndarray:
    """Gaussian smoothing of ``(P, k_y, k_x)`` images over the valid pixels only.

    Normalised convolution: the smoothed images over the smoothed mask, so pixels next to
    invalid ones are not pulled down; invalid pixels come back as zeros. ``smooth_px`` is the
    Gaussian's standard deviation in pixels (0: no smoothing).
    """
    if smooth_px <= 0:
        return np.where(valid, images, 0.0)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), smooth_px, mode="constant")
    num = ndimage.gaussian_filter(
        np.where(valid, images, 0.0), (0, smooth_px, smooth_px), mode="constant"
    )
    return np.where(valid, num / np.maximum(weight, 1e-12), 0.0)


def _azimuthal_variance(polar: np.ndarray, good: np.ndarray) -> np.ndarray:
    """``(P,)``: the variance along the azimuth, over good samples, summed over radii."""
    g = good[None].astype(np.float64)
    n = g.sum(axis=2)
    mean = (polar * g).sum(axis=2) / np.maximum(n, 1.0)
    var = (g * (polar - mean[..., None]) ** 2).sum(axis=2) / np.maximum(n, 1.0)
    return var.sum(axis=1)


def crystallinity_significance(
    patterns: np.ndarray,
    centre: tuple[float, float],
    *,
    central_mask_px: float = 0.0,
    valid: np.ndarray | None = None,
    sigma: np.ndarray | None = None,
    smooth_px: float = 1.5,
    n_angles: int = 360,
    n_realisations: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """How far each pattern's azimuthal variation exceeds what its counting noise gives.

    Speckle (counting noise) varies along the azimuth too, so a noisy amorphous halo has a
    sizeable :func:`crystallinity`; Bragg discs are what noise is not: larger than a pixel.
    The square-rooted pattern (its noise nearly uniform), smoothed over about a Bragg disc
    (``smooth_px``) within the fitted pixels, is sampled on a polar grid about the direct
    beam, and its variance along the azimuth, summed over radii (samples that touch unfitted
    pixels left out), is compared with the same statistic of pure noise: noise images of the
    pattern's own per-pixel level (:func:`_sqrt_noise`), treated alike, averaged over
    ``n_realisations`` (seeded, so the result is reproducible).

    Parameters
    ----------
    patterns
        ``(P, k_y, k_x)`` patterns, each summing to 1.
    centre
        ``(y, x)`` of the direct beam in pixels.
    central_mask_px
        Radii below this are not used (pixels).
    valid
        ``(k_y, k_x)`` bool, the fitted pixels (default all).
    sigma
        ``(P, k_y, k_x)`` counting-noise standard deviation of each pixel (the fit's
        ``diffraction_sigma``); default measured from each pattern.
    smooth_px
        Standard deviation of the Gaussian smoothing in pixels.
    n_angles
        Angles sampled.
    n_realisations
        Noise images averaged.
    seed
        Seed of the noise images.

    Returns
    -------
    numpy.ndarray
        ``(P,)``: the azimuthal variance in excess of noise's, in units of noise's (0 for
        pure noise, up to hundreds for strong spots); ``inf`` for a noiseless pattern with
        azimuthal variation.
    """
    x = np.maximum(np.asarray(patterns, dtype=np.float64), 0.0)
    ok = np.ones(x.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    radii, angles, good = _ring_grid(x.shape[1:], centre, central_mask_px, n_angles, ok)
    centres = np.array([centre], dtype=np.float64)
    observed = _azimuthal_variance(
        polar_transform(smooth_within(np.sqrt(x), ok, smooth_px), centres, radii, angles), good
    )
    level = _sqrt_noise(x, ok, sigma)
    rng = np.random.default_rng(seed)
    noise = np.zeros(x.shape[0])
    for _ in range(n_realisations):
        fake = smooth_within(level * rng.standard_normal(x.shape), ok, smooth_px)
        noise += _azimuthal_variance(polar_transform(fake, centres, radii, angles), good)
    noise /= max(n_realisations, 1)
    excess = observed - noise
    return np.where(
        noise > 0, excess / np.where(noise > 0, noise, 1.0), np.where(observed > 0, np.inf, 0.0)
    )


def phase_similarity(
    patterns: np.ndarray,
    centre: tuple[float, float],
    *,
    central_mask_px: float = 0.0,
    valid: np.ndarray | None = None,
    smooth_px: float = 1.5,
    n_angles: int = 360,
    scaling: Literal["none", "sqrt", "log"] = "sqrt",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotation-invariant similarity of components' Bragg spots, robust to noise and halo.

    :func:`dask_stemnmf.rotational_similarity` correlates whole polar patterns. Components
    of a fit are noisy and carry some amorphous halo: the pixel speckle lowers the
    correlation of one phase with itself (distances ``1 - rho`` up to 0.47 at 1,500
    e/pattern), the halo's radial profile, common to every phase, raises that of two phases
    (down to 0.31), and no cut separates them. Here each scaled pattern is smoothed over
    about a Bragg disc within the fitted pixels first (speckle is finer than a disc, spots
    are not), and the mean of every ring is taken out of the polar pattern (samples touching
    unfitted pixels left out): what is correlated is the arrangement of the spots alone. On
    component-like patterns of 2-5 phases at 1,500-20,000 e/pattern this brought the
    largest distance within a phase to 0.14 and the smallest between phases to 0.24 (see
    :func:`classify`).

    Parameters
    ----------
    patterns
        ``(P, k_y, k_x)`` patterns.
    centre
        ``(y, x)`` of the direct beam in pixels.
    central_mask_px
        Radii below this are not used (pixels).
    valid
        ``(k_y, k_x)`` bool, the fitted pixels (default all).
    smooth_px
        Standard deviation of the Gaussian smoothing in pixels.
    n_angles
        Angles sampled over 360 degrees.
    scaling
        ``"sqrt"``, ``"log"`` or ``"none"``, as in :func:`dask_stemnmf.rotational_similarity`.

    Returns
    -------
    rho : numpy.ndarray
        ``(P, P)`` maximum over rotations of the correlation, in ``[-1, 1]``.
    angle_deg : numpy.ndarray
        ``(P, P)`` the rotation taking ``i`` onto ``j`` in degrees, ``[0, 360)``, in the
        polar grid's sense (counter-clockwise from ``+k_x`` toward ``+k_y``).
    rho_unrotated : numpy.ndarray
        ``(P, P)`` the correlation without rotation: near ``rho`` for two pieces of one
        crystal.
    """
    x = np.maximum(np.asarray(patterns, dtype=np.float64), 0.0)
    if scaling == "sqrt":
        x = np.sqrt(x)
    elif scaling == "log":
        x = np.log1p(x / np.maximum(0.01 * x.max(axis=(1, 2), keepdims=True), 1e-300))
    ok = np.ones(x.shape[1:], bool) if valid is None else np.asarray(valid, bool)
    radii, angles, good = _ring_grid(x.shape[1:], centre, central_mask_px, n_angles, ok)
    centres = np.array([centre], dtype=np.float64)
    polar = polar_transform(smooth_within(x, ok, smooth_px), centres, radii, angles)
    g = good[None].astype(np.float64)
    ring_mean = (polar * g).sum(axis=2, keepdims=True) / np.maximum(g.sum(axis=2, keepdims=True), 1)
    unit = normalise_polar((polar - ring_mean) * g)
    rho, shift = azimuthal_correlation_max(*(np.fft.rfft(unit, axis=-1),) * 2, n_angles)
    rho_unrotated = np.einsum("irt,jrt->ij", unit, unit)
    return rho, shift * (360.0 / n_angles), rho_unrotated


def noise_corrected(rho: np.ndarray, significance: np.ndarray) -> np.ndarray:
    """Correlations of the patterns without their counting noise (correction for attenuation).

    A pattern is its signal plus noise; in the domain :func:`phase_similarity` correlates
    (square-rooted, smoothed over a disc, each ring's mean taken out) the noise's share of
    its energy is ``1 / (1 + s)``, with ``s`` the :func:`crystallinity_significance`
    (the azimuthal variance in excess of noise's, in units of noise's, measured in that
    same domain). Noise independent between patterns lowers their correlation by the
    factor ``a_i a_j``, ``a = sqrt(s / (1 + s))``, so ``rho_ij / (a_i a_j)`` is what the
    noise-free patterns would give: two noisy copies of one phase come back near 1,
    however noisy, while two phases keep their distance. Measured on fits of both
    generators at 1,500-20,000 e/pattern: the largest distance between components of one
    phase fell from 0.11-0.20 to 0.01-0.10, the smallest between phases moved from
    0.15-0.18 to 0.12-0.17. The significance's noise is conservative at few counts, so
    there the correction overshoots: Poisson copies of two patterns 0.18 apart came out
    0.15-0.19 apart at 5,000 counts each (significance 25-50) but 0.06-0.09 at 1,500
    (significance 6-13).

    Parameters
    ----------
    rho
        ``(P, P)`` correlations.
    significance
        ``(P,)`` :func:`crystallinity_significance` of the same patterns (``inf`` for a
        noiseless pattern).

    Returns
    -------
    numpy.ndarray
        ``(P, P)`` in ``[-1, 1]``.
    """
    s = np.clip(np.asarray(significance, dtype=np.float64), 0.0, None)
    finite = np.isfinite(s)
    a = np.where(finite, np.sqrt(s / (1.0 + np.where(finite, s, 0.0))), 1.0)
    a = np.maximum(a, 1e-3)
    return np.clip(np.asarray(rho, dtype=np.float64) / np.outer(a, a), -1.0, 1.0)


def _ring_grid(
    shape: tuple[int, ...],
    centre: tuple[float, float],
    central_mask_px: float,
    n_angles: int,
    valid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radii (one per pixel, mask to detector edge), angles, and ``(R, T)`` good samples.

    A sample is good when its four bilinear neighbours are all fitted; a ring with fewer
    than a tenth of its samples good is left out whole.
    """
    ny, nx = shape
    cy, cx = (float(v) for v in centre)
    r_min = float(central_mask_px or 0.0)
    r_max = max(float(min(cy, cx, ny - 1 - cy, nx - 1 - cx)), r_min + 1.0)
    radii, angles = polar_grid(max(2, int(np.ceil(r_max - r_min)) + 1), n_angles, r_min, r_max)
    on_fit = polar_transform(valid[None].astype(np.float64), np.array([[cy, cx]]), radii, angles)
    good = on_fit[0] > 1.0 - 1e-9
    good[good.sum(axis=1) < max(8, n_angles // 10)] = False
    return radii, angles, good


def cut_height(
    merge_heights: np.ndarray, min_distance: float, max_distance: float | None = None
) -> float:
    """Default cut of a dendrogram: in the largest relative gap between merge heights.

    Distances within one phase are noise-sized and those between phases are not, so the gap
    that separates them is the largest *ratio* of consecutive heights (an absolute gap is
    fooled by two well-separated phases merging high). Heights below ``min_distance / 2``
    count as that, and the cut, at the geometric middle of the chosen gap, is never below
    ``min_distance`` nor above ``max_distance``. Under the default complete linkage items
    farther apart than the cut never share a class and closer ones may still be kept apart
    (where another member of the class lies farther); under average linkage items closer
    than the cut always share one.

    The floor and ceiling are measured. On our simulator's phases, with
    :func:`phase_similarity` alone, distances within a phase stayed below 0.19 and those
    between phases above 0.25, and a cut kept within ``[0.2, 0.24]`` classified 150 scans
    of fit-like components exactly. The kinematic generator's CuZr (B2, [001]) and CuZr2
    (C11b, [100]) are closer: their *true* patterns are 0.17 apart, so that cut merged them
    in every scan holding both (ARI 0.36 at 3 phases). With the noise correction
    (:func:`noise_corrected`), over 16 fits of both generators (1,500-20,000 e/pattern, 2-5
    phases) distances within a phase were at most 0.13 (0.01-0.10 in most fits) but for
    components that mix two phases, and between phases at least 0.12 (0.06 in one fit
    whose component mixed the two close phases). There the largest relative gap no longer
    helps: with the cut kept within ``[0.08, 0.14]`` it chose 0.08 where a poor component
    of one phase lay 0.10-0.16 from the others (the demo's fit of that time). A fixed cut
    gave the same mean ARI, 0.69 over those fits, anywhere from 0.14 to 0.16 (0.61 at 0.17,
    where the close phases merge), against 0.57 for the old rule; it lowered one fit (2
    phases, a component 0.16 from its phase on average: 0.70 to 0.45). So the default is
    the middle of that window, ``min_distance = max_distance = 0.15`` (measured with average
    linkage; with complete linkage, the default since, 0.15 tied best again, with 0.13, over
    the validation grid's fits, see :func:`classify`). Without a ceiling the largest ratio
    sometimes lies between phases: two similar lattices at 0.27 and a third at 0.8 put
    the cut at 0.46 and merged the two.

    Parameters
    ----------
    merge_heights
        ``(n - 1,)`` heights of the merges (distances ``1 - rho``).
    min_distance
        The lowest cut.
    max_distance
        The highest cut (``None``: no ceiling; never below ``min_distance``).

    Returns
    -------
    float
        The distance at which to cut.
    """
    floor = 0.5 * float(min_distance)
    h = np.maximum(np.sort(np.asarray(merge_heights, dtype=np.float64)), floor)
    if h.size == 0 or floor <= 0:
        return float(min_distance)
    levels = np.concatenate([[floor], h])
    i = int(np.argmax(levels[1:] / levels[:-1]))
    cut = max(np.sqrt(levels[i] * levels[i + 1]), min_distance)
    return float(cut if max_distance is None else min(cut, max(max_distance, min_distance)))


def _scan_coord(coord: xr.DataArray, index: float) -> float:
    values = np.asarray(coord.values, dtype=np.float64)
    return float(np.interp(index, np.arange(values.size), values))


def _step(coord: xr.DataArray) -> float:
    values = np.asarray(coord.values, dtype=np.float64)
    return float(abs(values[1] - values[0])) if values.size > 1 else 1.0


@dataclass(frozen=True)
class Kinds:
    """What each component of a decomposition is (:func:`component_kinds`).

    Attributes
    ----------
    kind
        ``(K,)`` ``"crystalline"``, ``"amorphous"`` or ``"direct beam"``.
    label
        ``(K,)`` ``-1`` (:data:`AMORPHOUS`) or ``-2`` (:data:`DIRECT_BEAM`); crystalline
        components ``-1`` until they are classed.
    score, significance
        ``(K,)`` :func:`crystallinity` and :func:`crystallinity_significance`.
    patterns
        ``(K, k_y, k_x)`` float64, as read from the result.
    centre_px, central_mask_px, smooth_px
        The polar transform's centre (pixels), the central disc left out (pixels) and the
        smoothing of the significance test (pixels).
    valid
        ``(k_y, k_x)`` fitted pixels, or ``None``.
    """

    kind: np.ndarray
    label: np.ndarray
    score: np.ndarray
    significance: np.ndarray
    patterns: np.ndarray
    centre_px: tuple[float, float]
    central_mask_px: float
    smooth_px: float
    valid: np.ndarray | None


def component_kinds(
    result: xr.Dataset,
    *,
    crystallinity_threshold: float = 0.2,
    significance_threshold: float = 3.0,
    smooth_px: float | None = None,
    centre: Any = "auto",
    central_mask_px: float | None = None,
    n_angles: int = 360,
    scaling: Literal["none", "sqrt", "log"] = "sqrt",
) -> Kinds:
    """Tell crystalline components from the amorphous ones and the direct beam.

    A component is crystalline when its :func:`crystallinity` reaches
    ``crystallinity_threshold`` and its :func:`crystallinity_significance` reaches
    ``significance_threshold``; of the others, those with most of their intensity in the
    bright-field disc are the direct beam. The parameters are :func:`classify`'s.

    Returns
    -------
    Kinds
        Per component: kind, label, the two scores, and the geometry used.
    """
    patterns = np.asarray(result["diffractions"].values, dtype=np.float64)
    if patterns.ndim != 3:
        raise InputError("classify needs 2-D diffractions (component, k_y, k_x)")
    k = patterns.shape[0]
    disc = (result.attrs.get("masks") or {}).get("bright_field_disc")
    if central_mask_px is None and disc:
        central_mask_px = float(disc["radius_px"])
    if isinstance(centre, str) and centre == "auto" and disc:
        centre = tuple(disc["centre_px"])
    polar, grid = polar_patterns(
        patterns, centre=centre, n_angles=n_angles, central_mask_px=central_mask_px,
        scaling=scaling,
    )  # fmt: skip
    centre_px = tuple(grid["centres_px"].mean(axis=0))
    score = crystallinity(polar)
    if smooth_px is None:
        smooth_px = _default_smoothing(result.attrs, disc)
    valid = np.asarray(result["fit_mask"].values, bool) if "fit_mask" in result else None
    significance = crystallinity_significance(
        patterns, centre_px, central_mask_px=central_mask_px or 0.0, valid=valid,
        sigma=result["diffraction_sigma"].values if "diffraction_sigma" in result else None,
        smooth_px=smooth_px, n_angles=n_angles,
    )  # fmt: skip
    is_crystalline = (score >= crystallinity_threshold) & (significance >= significance_threshold)
    label = np.full(k, AMORPHOUS, dtype=np.int64)
    kind = np.array(["amorphous"] * k, dtype=object)
    if not disc:  # the maps are read only here
        disc = _mean_disc(patterns, np.asarray(result["maps"].values, dtype=np.float64))
    for j in np.flatnonzero(~is_crystalline):
        if _direct_beam(patterns[j], disc):
            label[j], kind[j] = DIRECT_BEAM, "direct beam"
    kind[is_crystalline] = "crystalline"
    return Kinds(
        kind=kind, label=label, score=score, significance=significance, patterns=patterns,
        centre_px=(float(centre_px[0]), float(centre_px[1])),
        central_mask_px=float(central_mask_px or 0.0), smooth_px=float(smooth_px), valid=valid,
    )  # fmt: skip


def classify(
    result: xr.Dataset,
    *,
    distance_threshold: float | None = None,
    n_classes: int | None = None,
    linkage: Literal["average", "complete", "single"] = "complete",
    min_distance: float = 0.15,
    max_distance: float | None = 0.15,
    crystallinity_threshold: float = 0.2,
    significance_threshold: float = 3.0,
    region_threshold: float = 0.5,
    region_significance: float = 10.0,
    smooth_px: float | None = None,
    centre: Any = "auto",
    central_mask_px: float | None = None,
    n_angles: int = 360,
    scaling: Literal["none", "sqrt", "log"] = "sqrt",
) -> xr.Dataset:
    """Classify the components of a decomposition by rotation-invariant diffraction similarity.

    Parameters
    ----------
    result
        A decomposition (``ConstrainedNMF().result_``, ``decompose``, ``pca``): ``maps
        (component, scan_y, scan_x)`` and ``diffractions (component, k_y, k_x)``; used when
        present: ``diffraction_sigma`` (same shape, the counting noise of each pixel),
        ``fit_mask (k_y, k_x)``, attrs ``masks`` (the bright-field disc), ``probe_fwhm_nm``,
        ``map_cutoff_inv_nm``, ``map_cutoff_cycles_per_px``, ``continuity_radius_px``.
    distance_threshold, n_classes
        Cut the dendrogram at this distance ``1 - rho``, or into this many classes (at most
        one of them); default in the largest relative gap between merge heights
        (:func:`cut_height`).
    linkage
        ``"complete"`` (default: every two members of a class lie within the cut, so a
        phase close to another is not joined to it through the average of its distances),
        ``"average"`` or ``"single"`` (Ward assumes Euclidean distances and does not apply).
        Over the fits of the README's validation table (16 cells, both generators, 500-20,000
        e/pattern, 2-5 phases, two seeds each) the default cut gave a mean ARI of 0.78 with
        complete linkage against 0.72 with average and 0.59 with single, complete at least
        as high as average on every cell, and flat from cuts 0.13 to 0.16.
    min_distance, max_distance
        The default cut is never below ``min_distance`` nor above ``max_distance``, in
        distances between noise-corrected patterns (:func:`noise_corrected`); both 0.15 by
        default, a fixed cut (:func:`cut_height` says why: within a phase distances stayed
        below 0.13 but for components mixing two phases, between phases above 0.12, and
        cuts from 0.14 to 0.16 classified best with average linkage, from 0.13 to 0.16 with
        complete linkage over the validation table's fits).
    crystallinity_threshold
        Components whose crystallinity is below this are not crystalline: the halo
        components that noise alone does not explain (holes where precipitates take the
        glass's place, leaked spots) stayed at or below 0.16 in the fits, and components
        holding a precipitate (with much halo) reached 0.28 and more.
    significance_threshold
        Nor are components whose azimuthal variation exceeds their noise's by less than this
        many times the noise's (:func:`crystallinity_significance`). In seven 48 x 48 fits
        (1,500-20,000 e/pattern, 2-5 phases, 12-14 components) halo components with a
        crystallinity of 0.35 or more reached at most 2.5 and the components holding a
        precipitate at least 4.1: 3 lies between.
    region_threshold
        A precipitate is a connected region where a member's map exceeds this fraction of its
        local maximum above the map's median.
    region_significance
        A region stays a precipitate only when its summed map intensity above the median is
        this many times the fluctuation of such sums over the map (:func:`_member_regions`);
        regions smaller than the probe (:func:`probe_area_px`) are dropped too. Regions of
        pure-noise maps reached 8.8 (200 sparse, clipped maps; none of band-limited
        Gaussian noise reached a probe's area), the precipitates of the fits 18 and more.
    smooth_px
        Smoothing of the significance test and of the similarity, in detector pixels; default
        two thirds of the Bragg disc radius (a uniform disc's own standard deviation; twice
        the fit's ``continuity_radius_px``, else the bright-field disc's radius), else 1.5.
    centre, central_mask_px, n_angles, scaling
        Polar-transform options (:func:`dask_stemnmf.similarity.polar_patterns`); the
        central-beam mask defaults to the result's bright-field disc when it has one.

    Returns
    -------
    xarray.Dataset
        Along ``component``: ``class_label`` (0.. crystalline classes, -1 amorphous, -2 direct
        beam), ``kind``, ``crystallinity``, ``crystallinity_significance``, ``rotation_deg``
        (from its class's reference); ``similarity`` (noise-corrected, what the clustering
        uses) and ``angle_deg`` ``(component, component_2)`` (crystalline pairs; NaN
        otherwise); along ``class``:
        ``class_pattern (class, k_y, k_x)`` (rotation-aligned mean, sums to 1), ``class_map
        (class, scan_y, scan_x)``, ``class_size``; along ``precipitate``:
        ``precipitate_class``, ``centroid_y_nm``, ``centroid_x_nm``, ``area_nm2``,
        ``precipitate_rotation_deg``, ``precipitate_component``, ``precipitate_significance``;
        ``linkage`` ``(merge, 4)`` (scipy's, over the crystalline components in order) and
        ``dendrogram_order``; attrs with the cut, the options, ``min_precipitate_area_px``
        and ``dropped_regions`` (regions too small, not significant, or another
        precipitate repeated in a mixed component's map, of its class or another).
    """
    for var in ("maps", "diffractions"):
        if var not in result.variables:
            raise InputError(
                f"result lacks {var!r}; pass the output of decompose or ConstrainedNMF"
            )
    if distance_threshold is not None and n_classes is not None:
        raise InputError("pass distance_threshold or n_classes, not both")
    if linkage not in ("average", "complete", "single"):
        raise InputError(f"linkage={linkage!r}; choose 'average', 'complete' or 'single'")
    if n_classes is not None and n_classes < 1:
        raise InputError(f"n_classes must be at least 1, got {n_classes}")
    kinds = component_kinds(
        result, crystallinity_threshold=crystallinity_threshold,
        significance_threshold=significance_threshold, smooth_px=smooth_px, centre=centre,
        central_mask_px=central_mask_px, n_angles=n_angles, scaling=scaling,
    )  # fmt: skip
    patterns = kinds.patterns
    maps = np.asarray(result["maps"].values, dtype=np.float64)
    k = patterns.shape[0]
    label, kind, score, significance = kinds.label, kinds.kind, kinds.score, kinds.significance
    crystalline = np.flatnonzero(kinds.kind == "crystalline")
    centre_px, central_mask_px, smooth_px = kinds.centre_px, kinds.central_mask_px, kinds.smooth_px
    valid = kinds.valid
    sim = np.full((k, k), np.nan)
    ang = np.full((k, k), np.nan)
    unrotated = np.full((k, k), np.nan)
    link = np.zeros((0, 4))
    order = np.zeros(0, dtype=np.int64)
    cut = float("nan")
    rotation = np.full(k, np.nan)
    if crystalline.size:
        rho, angle, rho0 = phase_similarity(
            patterns[crystalline], centre_px, central_mask_px=central_mask_px or 0.0,
            valid=valid, smooth_px=smooth_px, n_angles=n_angles, scaling=scaling,
        )  # fmt: skip
        rho = noise_corrected(rho, significance[crystalline])
        rho0 = noise_corrected(rho0, significance[crystalline])
        sim[np.ix_(crystalline, crystalline)] = rho
        ang[np.ix_(crystalline, crystalline)] = angle
        unrotated[np.ix_(crystalline, crystalline)] = rho0
        groups, link, order, cut = _cluster(
            rho, linkage, distance_threshold, n_classes, min_distance, max_distance
        )
        label[crystalline] = groups
    n_cls = int(label.max()) + 1 if crystalline.size else 0
    weight = maps.reshape(k, -1).sum(axis=1)
    class_pattern = np.zeros((n_cls, *patterns.shape[1:]))
    class_map = np.zeros((n_cls, *maps.shape[1:]))
    size = np.zeros(n_cls, dtype=np.int64)
    for c in range(n_cls):
        members = np.flatnonzero(label == c)
        ref = members[np.argmax(weight[members])]
        for j in members:
            rotation[j] = ang[ref, j] if j != ref else 0.0
            aligned = rotate_pattern(patterns[j], centre_px, -rotation[j])
            class_pattern[c] += aligned / max(aligned.sum(), 1e-300)
        class_pattern[c] /= class_pattern[c].sum() or 1.0
        class_map[c] = maps[members].sum(axis=0)
        size[c] = members.size
    min_area = probe_area_px(result)
    same_orientation = np.nan_to_num(unrotated) >= SAME_ORIENTATION * np.nan_to_num(sim, nan=1)
    np.fill_diagonal(same_orientation, True)
    table, dropped = _precipitates(
        result, maps, label, rotation, same_orientation, n_cls, region_threshold, min_area,
        region_significance,
    )  # fmt: skip
    return _dataset(result, locals_=dict(
        label=label, kind=kind, score=score, significance=significance, rotation=rotation,
        sim=sim, ang=ang, class_pattern=class_pattern, class_map=class_map, size=size,
        table=table, link=link, order=order, cut=cut,
    ), options={
        "linkage_method": linkage, "cut_distance": cut,
        "distance_threshold": "none" if distance_threshold is None else distance_threshold,
        "n_classes_requested": "none" if n_classes is None else n_classes,
        "min_distance": min_distance,
        "max_distance": "none" if max_distance is None else max_distance,
        "crystallinity_threshold": crystallinity_threshold,
        "significance_threshold": significance_threshold,
        "region_threshold": region_threshold, "region_significance": region_significance,
        "min_precipitate_area_px": min_area, "dropped_regions": dropped,
        "smooth_px": smooth_px, "n_angles": n_angles, "scaling": scaling,
        "centre_px": list(centre_px), "central_mask_px": central_mask_px or 0.0,
    })  # fmt: skip


def _default_smoothing(attrs: dict[str, Any], disc: dict[str, Any] | None) -> float:
    """Two thirds of the Bragg disc radius in pixels (a disc's own standard deviation)."""
    closing = _finite(attrs.get("continuity_radius_px"))
    if closing is not None and closing > 0:
        radius = 2.0 * closing  # the engine closes with half a disc radius
    elif disc:
        radius = float(disc["radius_px"])
    else:
        return 1.5
    return float(np.clip(2.0 * radius / 3.0, 1.0, 8.0))


def _mean_disc(patterns: np.ndarray, maps: np.ndarray) -> dict[str, Any] | None:
    """Find the bright-field disc of the maps-weighted mean of the patterns."""
    weight = np.maximum(maps.reshape(maps.shape[0], -1).sum(axis=1), 0)
    mean = np.tensordot(weight, np.maximum(patterns, 0), axes=1)
    try:
        cy, cx, r = find_bright_field_disc(mean)
    except ValueError:
        return None
    return {"centre_px": [cy, cx], "radius_px": r * 1.1}


def _direct_beam(pattern: np.ndarray, disc: dict[str, Any] | None) -> bool:
    """Whether most of a pattern's intensity lies in the bright-field disc."""
    total = float(np.maximum(pattern, 0).sum())
    if total <= 0 or not disc:
        return False
    cy, cx = disc["centre_px"]
    inside = disc_mask(pattern.shape, cy, cx, float(disc["radius_px"]))
    return float(np.maximum(pattern, 0)[inside].sum()) > 0.5 * total


def _cluster(
    rho: np.ndarray,
    method: str,
    distance_threshold: float | None,
    n_classes: int | None,
    min_distance: float,
    max_distance: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Labels ``0..C-1`` (in dendrogram order), linkage, leaf order and the cut distance."""
    n = rho.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.int64), np.zeros((0, 4)), np.zeros(1, dtype=np.int64), 0.0
    dist = np.clip(1.0 - 0.5 * (rho + rho.T), 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    link = hierarchy.linkage(squareform(dist, checks=False), method=method)
    order = hierarchy.leaves_list(link)
    if n_classes is not None:
        raw = hierarchy.fcluster(link, t=min(n_classes, n), criterion="maxclust")
        cut = float("nan")
    else:
        cut = (
            distance_threshold
            if distance_threshold is not None
            else cut_height(link[:, 2], min_distance, max_distance)
        )
        raw = hierarchy.fcluster(link, t=cut, criterion="distance")
    # number classes by their first appearance in the dendrogram order
    renumber: dict[int, int] = {}
    for leaf in order:
        renumber.setdefault(int(raw[leaf]), len(renumber))
    labels = np.array([renumber[int(v)] for v in raw], dtype=np.int64)
    return labels, link, order.astype(np.int64), float(cut)


def probe_area_px(result: xr.Dataset) -> float:
    """Area of the probe in scan pixels, ``pi (FWHM / 2)^2``: the smallest precipitate.

    The FWHM comes from the result's ``probe_fwhm_nm``, else from the map constraint's
    cutoff (an Airy probe's FWHM is ``1.028 / q_c``: ``map_cutoff_inv_nm`` in cycles per nm,
    else ``map_cutoff_cycles_per_px``); without any, 4 pixels.

    Parameters
    ----------
    result
        A decomposition with ``scan_y`` and ``scan_x`` in nm.

    Returns
    -------
    float
        Area in scan pixels.
    """
    attrs = result.attrs
    step = np.sqrt(_step(result["scan_y"]) * _step(result["scan_x"]))
    fwhm_nm = _finite(attrs.get("probe_fwhm_nm"))
    cutoff_nm = _finite(attrs.get("map_cutoff_inv_nm"))
    cutoff_px = _finite(attrs.get("map_cutoff_cycles_per_px"))
    if fwhm_nm is not None and fwhm_nm > 0:
        fwhm_px = fwhm_nm / step
    elif cutoff_nm is not None and cutoff_nm > 0:
        fwhm_px = 1.028 / cutoff_nm / step
    elif cutoff_px is not None and cutoff_px > 0:
        fwhm_px = 1.028 / cutoff_px
    else:
        return 4.0
    return float(np.pi * (0.5 * fwhm_px) ** 2)


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _sum_fluctuation(excess: np.ndarray, n_px: int) -> float:
    """Spread (robust) of a map's sums over discs of ``n_px`` pixels: an n-pixel sum's noise.

    Measured, not modelled: whatever the map's noise and its correlation between positions
    (a band-limited map's noise is correlated over about a probe), the sums over discs of the
    region's area, placed everywhere (edges reflected), spread as much as a region of noise
    would; a few precipitates barely move their median absolute deviation.
    """
    radius = max(np.sqrt(n_px / np.pi), 0.5)
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (np.hypot(yy, xx) <= radius).astype(np.float64)
    pad = min(r, min(excess.shape) - 1)
    padded = np.pad(excess, pad, mode="reflect") if pad > 0 else excess
    sums = signal.fftconvolve(padded, disc, mode="same")
    if pad > 0:
        sums = sums[pad:-pad, pad:-pad]
    return float(1.4826 * np.median(np.abs(sums - np.median(sums))))


def _member_regions(
    member_map: np.ndarray,
    threshold: float,
    min_area_px: float,
    min_significance: float,
) -> tuple[list[tuple[np.ndarray, float]], int]:
    """Find a member map's precipitate regions, their significance, and how many were dropped.

    Every blob is looked at, not only the map's highest (a component may hold a large
    precipitate and a small one of its phase): where the map stands ``3 sigma`` above its
    median (``sigma`` its robust spread) and the blob's peak reaches :data:`LOCAL_FLOOR` of
    the map's highest (weaker blobs were other precipitates leaking into the map: in the
    fits a floor of 0.1 put one in the wrong class, 0.2 none), a region is the part above
    ``threshold`` of that blob's own peak (all above the median). It stays when it covers
    at least ``min_area_px`` pixels (a probe: anything smaller is not resolved) and its
    summed intensity above the median stands ``min_significance`` times above the
    fluctuation of such sums over the map (:func:`_sum_fluctuation`).
    """
    base = float(np.median(member_map))
    excess = member_map - base
    top = float(excess.max())
    if top <= 0:
        return [], 0
    spread = 1.4826 * float(np.median(np.abs(excess)))
    blobs, _ = ndimage.label(excess > 3.0 * spread)
    kept: list[tuple[np.ndarray, float]] = []
    noise: dict[int, float] = {}
    dropped = 0
    for b, where in enumerate(ndimage.find_objects(blobs), start=1):
        blob = blobs[where] == b
        peak = float(excess[where][blob].max())
        if peak < LOCAL_FLOOR * top:
            continue
        parts, n = ndimage.label(blob & (excess[where] > threshold * peak))
        for r in range(1, n + 1):
            region = np.zeros(member_map.shape, bool)
            region[where] = parts == r
            area = int(region.sum())
            if area < min_area_px:
                dropped += 1
                continue
            if area not in noise:
                noise[area] = _sum_fluctuation(excess, area)
            z = float(excess[region].sum()) / noise[area] if noise[area] > 0 else np.inf
            if z >= min_significance:
                kept.append((region, z))
            else:
                dropped += 1
    return kept, dropped


def _join_split_pieces(
    groups: list[list[tuple[np.ndarray, int, float]]],
    class_map: np.ndarray,
    aligned: np.ndarray,
) -> list[list[tuple[np.ndarray, int, float]]]:
    """Join touching regions of one class that are pieces of one crystal.

    A decomposition with spare components splits a large precipitate into pieces (a core
    and a crescent, say), each a region of its own member's map, side by side. Two touching
    regions are one precipitate when their members see the crystal in the same orientation
    (``aligned``: the correlation without rotation is at least :data:`SAME_ORIENTATION` of
    the best over rotations; 0.86-0.98 for split pieces of the fits, at most 0.65 for two
    precipitates of a phase) and the class map (the members' sum) has no dip between their
    peaks deeper than :data:`SPLIT_DIP` of the lower one (two particles the probe resolves
    leave a saddle between them).
    """
    unions = [np.logical_or.reduce([g[0] for g in group]) for group in groups]
    a = 0
    while a < len(groups):
        near = ndimage.binary_dilation(unions[a], np.ones((3, 3), bool))
        for b in range(a + 1, len(groups)):
            same = any(aligned[i[1], j[1]] for i in groups[a] for j in groups[b])
            if (
                same
                and (near & unions[b]).any()
                and not _dip_between(
                    class_map, _peak(class_map, unions[a]), _peak(class_map, unions[b])
                )
            ):
                groups[a] = groups[a] + groups.pop(b)
                unions[a] = unions[a] | unions.pop(b)
                break
        else:
            a += 1
    return groups


def _excess_counts(member_map: np.ndarray, region: np.ndarray) -> float:
    """Return the counts a member's map holds in a region above its median (its baseline)."""
    return float(np.maximum(member_map - np.median(member_map), 0.0)[region].sum())


def _not_shared(where: list[np.ndarray], held: list[float]) -> list[int]:
    """Return the precipitates to keep: those not another one seen through a mixture.

    ``where`` is each precipitate's ``(scan_y, scan_x)`` region and ``held`` its counts.
    Going from the most counts down, a precipitate is dropped where it coincides with a kept
    one (:data:`SHARED_OVERLAP`) and holds less than :data:`SHARED_COUNTS` of its counts,
    whatever the two classes: a mixed component of the same phase repeats a region in
    another orientation, as one of another phase does.
    """
    keep: list[int] = []
    for i in sorted(range(len(where)), key=lambda i: -held[i]):
        shared = False
        for j in keep:
            if held[i] >= SHARED_COUNTS * held[j]:
                continue
            union = int((where[i] | where[j]).sum())
            if union and (where[i] & where[j]).sum() >= SHARED_OVERLAP * union:
                shared = True
                break
        if not shared:
            keep.append(i)
    return sorted(keep)


def _dip_between(image: np.ndarray, p: np.ndarray, q: np.ndarray) -> bool:
    """Whether the image falls between two points by more than :data:`SPLIT_DIP`."""
    steps = int(np.ceil(2 * np.hypot(*(p - q)))) + 2
    line = ndimage.map_coordinates(image, np.linspace(p, q, steps).T, order=1, mode="nearest")
    return bool(line.min() < (1.0 - SPLIT_DIP) * min(line[0], line[-1]))


def _peak(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``(y, x)`` of an image's maximum within a mask, as floats."""
    flat = np.argmax(np.where(where, image, -np.inf))
    return np.array(np.unravel_index(flat, image.shape), dtype=np.float64)


def _precipitates(
    result: xr.Dataset,
    maps: np.ndarray,
    label: np.ndarray,
    rotation: np.ndarray,
    aligned: np.ndarray,
    n_cls: int,
    threshold: float,
    min_area_px: float,
    min_significance: float,
) -> tuple[dict[str, np.ndarray], int]:
    """Tabulate the precipitates: significant regions of the members' maps, by class.

    Each member's map gives its regions (:func:`_member_regions`: at least a probe's area,
    summed intensity well above the map's noise); regions of one class that overlap by more
    than half of the smaller and whose members see the crystal in the same orientation
    (``aligned``) are one precipitate (a particle shared by two components), so that two
    touching precipitates of one phase, seen by two components, stay two while the class
    map would join them, even where the probe blurs them into one another (two crystals of
    a phase at other rotations, 0.9 nm apart, in the demo). A precipitate that is another's
    (of another class, or of its class in another orientation), repeated weaker in a mixed
    component's map, is dropped (:func:`_not_shared`). Returns the table and the number of
    regions dropped.
    """
    ys, xs = result["scan_y"], result["scan_x"]
    pixel_area = _step(ys) * _step(xs)
    rows: list[tuple[int, float, float, float, float, int, float]] = []
    where: list[np.ndarray] = []  # each row's region
    held: list[float] = []  # each row's counts above its members' maps' medians
    dropped = 0
    for c in range(n_cls):
        members = np.flatnonzero(label == c)
        regions: list[tuple[np.ndarray, int, float]] = []
        for j in members:
            kept, n_dropped = _member_regions(maps[j], threshold, min_area_px, min_significance)
            dropped += n_dropped
            regions.extend((region, int(j), z) for region, z in kept)
        groups: list[list[tuple[np.ndarray, int, float]]] = []
        for region in regions:
            for group in groups:
                union = np.logical_or.reduce([g[0] for g in group])
                small = min(int(region[0].sum()), int(union.sum()))
                same = any(aligned[region[1], g[1]] for g in group)
                if same and np.logical_and(union, region[0]).sum() > 0.5 * small:
                    group.append(region)
                    break
            else:
                groups.append([region])
        class_map = maps[members].sum(axis=0)
        groups = _join_split_pieces(groups, class_map, aligned)
        yy, xx = np.indices(class_map.shape)
        for group in groups:
            inside = np.logical_or.reduce([g[0] for g in group])
            w = np.where(inside, np.maximum(class_map, 0.0), 0.0)
            if w.sum() <= 0:
                continue
            cy = float((w * yy).sum() / w.sum())
            cx = float((w * xx).sum() / w.sum())
            main = max(group, key=lambda g: float(maps[g[1]][g[0]].sum()))
            rows.append((
                c, _scan_coord(ys, cy), _scan_coord(xs, cx), float(inside.sum()) * pixel_area,
                float(rotation[main[1]]), main[1], max(g[2] for g in group),
            ))  # fmt: skip
            where.append(inside)
            held.append(sum(_excess_counts(maps[g[1]], g[0]) for g in group))
    keep = _not_shared(where, held)
    dropped += len(rows) - len(keep)
    rows = [rows[i] for i in keep]
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(7)]
    return {
        "precipitate_class": np.asarray(cols[0], dtype=np.int64),
        "centroid_y_nm": np.asarray(cols[1], dtype=np.float64),
        "centroid_x_nm": np.asarray(cols[2], dtype=np.float64),
        "area_nm2": np.asarray(cols[3], dtype=np.float64),
        "precipitate_rotation_deg": np.asarray(cols[4], dtype=np.float64),
        "precipitate_component": np.asarray(cols[5], dtype=np.int64),
        "precipitate_significance": np.asarray(cols[6], dtype=np.float64),
    }, dropped


def _dataset(result: xr.Dataset, locals_: dict[str, Any], options: dict[str, Any]) -> xr.Dataset:
    v = locals_
    k = v["label"].size
    n_cls = v["class_map"].shape[0]
    sig = tuple(result["diffractions"].dims[1:])
    data: dict[str, Any] = {
        "class_label": (("component",), v["label"]),
        "kind": (("component",), v["kind"].astype(str)),
        "crystallinity": (("component",), v["score"]),
        "crystallinity_significance": (("component",), v["significance"]),
        "rotation_deg": (("component",), v["rotation"], {"units": "deg"}),
        "similarity": (("component", "component_2"), v["sim"]),
        "angle_deg": (("component", "component_2"), v["ang"], {"units": "deg"}),
        "class_pattern": (("class", *sig), v["class_pattern"]),
        "class_map": (("class", "scan_y", "scan_x"), v["class_map"]),
        "class_size": (("class",), v["size"]),
        "linkage": (("merge", "linkage_column"), v["link"]),
        "dendrogram_order": (("leaf",), v["order"]),
    }
    for name, values in v["table"].items():
        units = {"centroid_y_nm": "nm", "centroid_x_nm": "nm", "area_nm2": "nm^2"}.get(name)
        data[name] = (("precipitate",), values, {"units": units} if units else {})
    coords = {
        "component": np.arange(k),
        "component_2": np.arange(k),
        "class": np.arange(n_cls),
        "precipitate": np.arange(v["table"]["precipitate_class"].size),
        "scan_y": result["scan_y"],
        "scan_x": result["scan_x"],
        **{d: result[d] for d in sig},
    }
    return xr.Dataset(data, coords=coords, attrs=options)
