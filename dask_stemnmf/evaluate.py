"""Score a decomposition against the ground truth of a simulated scan.

Found components are matched one-to-one to the true sources by the Hungarian algorithm on
the cosine similarity of their diffractions (over the pixels the fit used); each matched pair
is then scored by the cosine of its diffractions and of its maps. :func:`hole_depth` measures
the artefact the diffraction-continuity constraint removes: a component's artificial dips
where another source owns a Bragg disc (Kimoto et al., Fig. 1c). :func:`pattern_mixture` says
what a component's diffraction is made of in true patterns: a precipitate component that
holds a share of the amorphous halo fits the data as well as a pure one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.optimize import linear_sum_assignment, nnls
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from .errors import InputError
from .physics import bragg_disc_radius_inv_nm

__all__ = [
    "alike_groups",
    "cosine_matrix",
    "hole_depth",
    "hole_depth_of_truth",
    "match_to_truth",
    "pattern_mixture",
]


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute cosine similarity of every row of ``a`` with every row of ``b``.

    Parameters
    ----------
    a, b
        ``(P, L)`` and ``(Q, L)`` vectors.

    Returns
    -------
    numpy.ndarray
        ``(P, Q)`` in ``[0, 1]``; a zero vector scores 0 against everything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    return np.abs(a @ b.T) / np.maximum(norms, 1e-300)


def match_to_truth(
    result: xr.Dataset,
    truth: xr.Dataset,
    pixels: np.ndarray | None = None,
    *,
    alike: float | None = None,
) -> xr.Dataset:
    """Match found components to true sources and score each match.

    With ``alike``, true sources whose patterns are that alike (cosine over the compared
    pixels, joined transitively) are one source to the factorisation: a phase in the same
    orientation in two places scatters one diffraction, which one component with both
    regions in its map represents exactly, and no factorisation can split. Such a group is
    matched as one source (its patterns averaged by their counts, its maps summed) and every
    member gets the group's component and scores.

    Parameters
    ----------
    result
        A decomposition: ``maps (component, scan_y, scan_x)``, ``diffractions (component,
        *signal)`` and, optionally, ``fit_mask (*signal)`` (pixels the fit used; others are
        ignored by the scores).
    truth
        A simulated scan with ``true_maps (source, scan_y, scan_x)`` and
        ``true_patterns (source, *signal)``.
    pixels
        ``(*signal)`` boolean: the pixels the diffractions are compared on (to compare
        several results on the same pixels); default the result's ``fit_mask``, else all.
    alike
        Cosine in ``(0, 1]`` above which true patterns count as one source; ``None``: every
        source apart.

    Returns
    -------
    xarray.Dataset
        Along ``source``: ``component`` (the matched component, -1 when there are fewer
        components than sources and this source got none), ``diffraction_cosine`` and
        ``map_cosine`` (NaN when unmatched), ``group`` (the lowest source index of the
        source's group of alike sources; the source itself without ``alike``).
    """
    if alike is not None and not 0 < alike <= 1:
        raise InputError(f"alike must lie in (0, 1], not {alike!r}; or pass None")
    for name, ds, want in (
        ("result", result, ("maps", "diffractions")),
        ("truth", truth, ("true_maps", "true_patterns")),
    ):
        missing = [v for v in want if v not in ds.variables]
        if missing:
            raise InputError(
                f"{name} lacks {', '.join(missing)}; pass a fit result and a simulated scan"
            )
    n_src, k = truth.sizes["source"], result.sizes["component"]
    tp = np.asarray(truth["true_patterns"].values, dtype=np.float64).reshape(n_src, -1)
    fp = np.asarray(result["diffractions"].values, dtype=np.float64).reshape(k, -1)
    if tp.shape[1] != fp.shape[1]:
        raise InputError(
            f"the result's diffractions have {fp.shape[1]} pixels and the truth's {tp.shape[1]}; "
            "score a result against the scan it was fitted to"
        )
    if pixels is None and "fit_mask" in result.variables:
        pixels = result["fit_mask"].values
    if pixels is not None:
        used = np.asarray(pixels, dtype=bool).reshape(-1)
        if used.size != tp.shape[1]:
            raise InputError(f"pixels has {used.size} values for {tp.shape[1]} detector pixels")
        tp, fp = tp[:, used], fp[:, used]
    tm = np.asarray(truth["true_maps"].values, dtype=np.float64).reshape(n_src, -1)
    fm = np.asarray(result["maps"].values, dtype=np.float64).reshape(k, -1)
    group = alike_groups(tp, alike) if alike is not None else np.arange(n_src)
    heads, member = np.unique(group, return_inverse=True)
    gp, gm = _merged_sources(tp, tm, member, heads.size)
    cp, cm = cosine_matrix(gp, fp), cosine_matrix(gm, fm)
    rows, cols = linear_sum_assignment(-cp)
    component = np.full(heads.size, -1, dtype=np.int64)
    dcos = np.full(heads.size, np.nan)
    mcos = np.full(heads.size, np.nan)
    component[rows] = cols
    dcos[rows] = cp[rows, cols]
    mcos[rows] = cm[rows, cols]
    coords = {"source": truth["source"].values}
    return xr.Dataset(
        {
            "component": (("source",), component[member]),
            "diffraction_cosine": (("source",), dcos[member]),
            "map_cosine": (("source",), mcos[member]),
            "group": (("source",), group),
        },
        coords=coords,
    )


def alike_groups(patterns: np.ndarray, alike: float) -> np.ndarray:
    """Group patterns whose cosine is at least ``alike``, transitively (single linkage).

    Parameters
    ----------
    patterns
        ``(n, L)`` patterns.
    alike
        Cosine threshold in ``(0, 1]``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int64: each pattern's group, named by its lowest member's index.
    """
    near = cosine_matrix(patterns, patterns) >= alike
    _, label = connected_components(csr_matrix(near), directed=False)
    n = patterns.shape[0]
    lowest = np.full(n, n, dtype=np.int64)
    np.minimum.at(lowest, label, np.arange(n))
    return lowest[label]


def _merged_sources(
    patterns: np.ndarray, maps: np.ndarray, member: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """One pattern and map per group: patterns averaged by counts, maps summed.

    ``patterns`` ``(n, L)`` and ``maps`` ``(n, N)`` of the sources, ``member`` ``(n,)`` each
    source's group in ``[0, n_groups)``. A source contributes ``maps[s] x patterns[s]`` to
    the scan; with each pattern scaled to sum 1 its map carries its counts, so the group's
    map is the sum of its members' and its pattern their count-weighted mean.
    """
    if n_groups == patterns.shape[0]:
        return patterns, maps
    sums = patterns.sum(axis=1)
    unit = patterns / np.where(sums == 0, 1.0, sums)[:, None]
    counts = maps * sums[:, None]
    gp = np.zeros((n_groups, patterns.shape[1]))
    gm = np.zeros((n_groups, maps.shape[1]))
    np.add.at(gp, member, unit * counts.sum(axis=1)[:, None])
    np.add.at(gm, member, counts)
    return gp, gm


#: Pixels where a precipitate source's pattern exceeds this fraction of its maximum (its
#: discs, faint ones and soft rims included) are kept out of the arcs.
_EXCLUDE_THRESHOLD = 0.01


def _beam_geometry(truth: xr.Dataset, beam: np.ndarray) -> tuple[tuple[float, float], float]:
    """Beam centre ``(cy, cx)`` in pixels and the Bragg-disc radius in pixels.

    The centre comes from ``attrs['beam_centre_px']``, else from the direct-beam pattern
    (the centroid of its pixels above half its maximum); the radius from the calibration
    (``alpha / lambda`` over the pixel size of ``k_x`` in 1/nm), else from the area of the
    direct-beam disc above half its maximum.
    """
    bright = beam >= 0.5 * beam.max() if beam.max() > 0 else np.zeros(beam.shape, dtype=bool)
    centre_attr = truth.attrs.get("beam_centre_px")
    if centre_attr is not None and len(centre_attr) == 2:
        centre = (float(centre_attr[0]), float(centre_attr[1]))
    elif bright.any():
        yy, xx = np.nonzero(bright)
        weight = beam[yy, xx]
        centre = (float(yy @ weight / weight.sum()), float(xx @ weight / weight.sum()))
    else:
        centre = ((beam.shape[0] - 1) / 2.0, (beam.shape[1] - 1) / 2.0)
    radius = math.nan
    try:
        k_x = truth["k_x"]
        if k_x.attrs.get("units") == "1/nm" and k_x.size > 1:
            dk = abs(float(k_x[1] - k_x[0]))
            radius = (
                bragg_disc_radius_inv_nm(
                    float(truth.attrs["beam_energy_kev"]),
                    float(truth.attrs["convergence_semiangle_mrad"]),
                )
                / dk
            )
    except (KeyError, TypeError, ValueError):
        radius = math.nan
    if not math.isfinite(radius) or radius <= 0:
        radius = math.sqrt(max(int(bright.sum()), 1) / math.pi)
    return centre, max(radius, 1.0)


def _bragg_discs(
    pattern: np.ndarray, centre: tuple[float, float], radius: float, threshold: float
) -> np.ndarray:
    """Centres ``(n, 2)`` (pixels) of the Bragg discs of one source's pattern.

    Local maxima, over a disc's footprint, of the pattern smoothed by half a disc radius,
    above ``threshold`` of its maximum; the direct-beam disc (within 1.5 radii of the beam
    centre) is left out; each centre is refined to the intensity-weighted centroid of the
    pixels within a radius of it.
    """
    smooth = ndimage.gaussian_filter(np.asarray(pattern, dtype=np.float64), 0.5 * radius)
    top = float(smooth.max())
    if not top > 0:
        return np.zeros((0, 2))
    half = int(math.ceil(radius))
    fy, fx = np.mgrid[-half : half + 1, -half : half + 1]
    footprint = np.hypot(fy, fx) <= radius
    local = ndimage.maximum_filter(smooth, footprint=footprint, mode="constant", cval=-np.inf)
    peaks = np.argwhere((smooth >= local) & (smooth > threshold * top))
    order = np.argsort(-smooth[peaks[:, 0], peaks[:, 1]])
    yy, xx = np.indices(pattern.shape)
    found: list[tuple[float, float]] = []
    for py, px in peaks[order]:
        if math.hypot(py - centre[0], px - centre[1]) < 1.5 * radius:
            continue
        if any(math.hypot(py - y, px - x) < radius for y, x in found):
            continue
        near = np.hypot(yy - py, xx - px) <= radius
        weight = np.clip(pattern[near], 0.0, None)
        if weight.sum() > 0:
            found.append(
                (float(yy[near] @ weight / weight.sum()), float(xx[near] @ weight / weight.sum()))
            )
        else:
            found.append((float(py), float(px)))
    return np.asarray(found, dtype=np.float64).reshape(-1, 2)


def hole_depth(
    result: xr.Dataset,
    truth: xr.Dataset,
    *,
    match: xr.Dataset | np.ndarray | None = None,
    disc_threshold: float = 0.1,
    arc_offset: tuple[float, float] = (3.0, 8.0),
) -> xr.Dataset:
    """Depth of each component's artificial dips at the other sources' Bragg discs.

    The artefact of primitive NMF that the diffraction-continuity constraint removes
    (Kimoto et al., Fig. 1c): a component's diffraction shows holes where another component
    owns a Bragg spot. Each found component ``k`` owns the source ``m_k`` it is matched to by
    :func:`match_to_truth` and every precipitate source whose pattern makes at least
    ``OWN_SHARE`` (0.1) of its diffraction (non-negative least squares on the true patterns:
    a mixture, or a spare component that holds a precipitate but was matched to another
    source). For every Bragg disc of every precipitate source it does not own (discs lying
    within two disc radii of an owned source's disc are skipped), at radius ``R`` and angle
    ``theta`` about the beam centre:

    - ``inside``: the component's mean over the disc's pixels;
    - ``arc``: its mean over the arc of the same radius (``|rho - R| <= r / 2``) beside the
      disc, at arc lengths ``arc_offset`` (in disc radii ``r``) on either side of it, leaving
      out every pixel within 1.5 radii of a Bragg disc or of the direct beam and every pixel
      where a precipitate source's pattern exceeds its median by 1 % of its maximum (its
      faint discs and soft rims); where that leaves fewer than four pixels, only the
      pixels of this source and of the sources the component owns are left out; so the
      component's own spots do not bias it, while the arc follows a halo ring;
    - ``depth = max(0, arc - inside)``.

    The component's hole depth is the mean depth over those discs divided by its mean
    intensity over the fitted pixels. Only fitted pixels (``fit_mask``) are used throughout.

    Parameters
    ----------
    result
        A decomposition: ``diffractions (component, k_y, k_x)``, optionally ``fit_mask``.
    truth
        A simulated scan with ``true_patterns (source, k_y, k_x)`` (source 0 the direct beam),
        optionally ``true_class`` (precipitates are the sources with a class >= 0; without it,
        sources 2 and up), ``attrs['beam_centre_px']`` and the calibration.
    match
        The output of :func:`match_to_truth` (or its ``component`` per source as an array,
        -1 for none); computed when omitted.
    disc_threshold
        A Bragg disc is a local maximum above this fraction of its source's maximum.
    arc_offset
        Arc lengths from a disc's centre, in disc radii, of the arc it is compared with.

    Returns
    -------
    xarray.Dataset
        Along ``component``: ``hole_depth`` (NaN where no other source's disc could be
        measured or the component is empty), ``matched_source`` (-1 when unmatched),
        ``owned_sources (component, source)`` (bool: the sources whose discs are not
        holes of the component) and ``n_discs`` (discs averaged). Attrs:
        ``worst_hole_depth`` (the largest), ``worst_component``, ``disc_radius_px``,
        ``beam_centre_px``.
    """
    if "diffractions" not in result.variables or "true_patterns" not in truth.variables:
        raise InputError("hole_depth needs a result with diffractions and a simulated scan")
    tp = np.asarray(truth["true_patterns"].values, dtype=np.float64)
    fp = np.asarray(result["diffractions"].values, dtype=np.float64)
    if tp.ndim != 3 or fp.ndim != 3:
        raise InputError("hole_depth needs 2-D diffractions (k_y, k_x), not spectra")
    if tp.shape[1:] != fp.shape[1:]:
        raise InputError(
            f"the result's diffractions are {fp.shape[1:]} and the truth's {tp.shape[1:]}; "
            "score a result against the scan it was fitted to"
        )
    if not 0 < disc_threshold < 1 or not 0 <= arc_offset[0] < arc_offset[1]:
        raise InputError("disc_threshold must lie in (0, 1) and arc_offset be (near, far)")
    n_src, k = tp.shape[0], fp.shape[0]
    fitted = np.ones(tp.shape[1:], dtype=bool)
    if "fit_mask" in result.variables:
        fitted = np.asarray(result["fit_mask"].values, dtype=bool).reshape(tp.shape[1:])
    if match is None and "maps" in result.variables and "true_maps" in truth.variables:
        match = match_to_truth(result, truth)
    elif match is None:  # diffractions only: the same assignment, on the diffractions' cosine
        used = fitted.reshape(-1)
        cos = cosine_matrix(tp.reshape(n_src, -1)[:, used], fp.reshape(k, -1)[:, used])
        rows, cols = linear_sum_assignment(-cos)
        match = np.full(n_src, -1, dtype=np.int64)
        match[rows] = cols
    per_source = np.asarray(
        match["component"].values if isinstance(match, xr.Dataset) else match, dtype=np.int64
    ).reshape(-1)
    if per_source.size != n_src:
        raise InputError(f"match has {per_source.size} entries for {n_src} sources")
    own = np.full(k, -1, dtype=np.int64)  # the first source matched to each component
    for s, c in enumerate(per_source):
        if 0 <= c < k and own[c] < 0:
            own[c] = s
    if "true_class" in truth.variables:
        crystal = np.asarray(truth["true_class"].values).reshape(-1) >= 0
    else:
        crystal = np.arange(n_src) >= 2
    crystal[0] = False  # the direct beam
    owned = _owned_sources(fp, tp, fitted, per_source, crystal)

    centre, radius = _beam_geometry(truth, tp[0])
    discs = [
        _bragg_discs(tp[s], centre, radius, disc_threshold) if crystal[s] else np.zeros((0, 2))
        for s in range(n_src)
    ]
    yy, xx = np.indices(tp.shape[1:])
    rho = np.hypot(yy - centre[0], xx - centre[1])
    phi = np.arctan2(yy - centre[0], xx - centre[1])
    free = fitted & (rho > 1.5 * radius)
    # per source: its discs and their soft rims, which bias an arc of a component that owns
    # them or of a disc of that source
    taken = np.zeros((n_src, *tp.shape[1:]), dtype=bool)
    for s in range(n_src):
        if crystal[s] and tp[s].max() > 0:
            # above its own floor (the detector's tail spreads a little everywhere)
            floor = float(np.median(tp[s][fitted])) if fitted.any() else 0.0
            taken[s] = tp[s] > floor + _EXCLUDE_THRESHOLD * (tp[s].max() - floor)
            for cy, cx in discs[s]:
                taken[s] |= np.hypot(yy - cy, xx - cx) <= 1.5 * radius
    anyone = taken.any(axis=0)
    flat = fp.reshape(k, -1)
    half = int(math.ceil(radius))
    disc_area = float(
        np.count_nonzero(np.hypot(*np.mgrid[-half : half + 1, -half : half + 1]) <= radius)
    )

    # depth of every component at every disc: (n_discs_total, k), and each disc's source
    depths, disc_source, disc_at = [], [], []
    for s in range(n_src):
        for cy, cx in discs[s]:
            inside = (np.hypot(yy - cy, xx - cx) <= radius) & fitted
            if inside.sum() < 0.5 * disc_area:  # mostly off the detector or not fitted
                continue
            r_disc = math.hypot(cy - centre[0], cx - centre[1])
            theta = math.atan2(cy - centre[0], cx - centre[1])
            along = np.abs(np.angle(np.exp(1j * (phi - theta)))) * r_disc
            arc = (
                free
                & ~taken[s]
                & (np.abs(rho - r_disc) <= 0.5 * radius)
                & (along >= arc_offset[0] * radius)
                & (along <= arc_offset[1] * radius)
            )
            inside_mean = flat[:, inside.reshape(-1)].mean(axis=1)
            depth = np.full(k, np.nan)
            clear = arc & ~anyone
            for c in range(k):
                # clear of every disc where there is room; in crowded patterns clear of
                # this source's and the component's own, with the median of the arc robust
                # to other sources' holes along it
                mine = clear if clear.sum() >= 4 else arc
                mine = mine & ~taken[owned[c]].any(axis=0)
                if mine.sum() >= 4:
                    depth[c] = max(float(np.median(flat[c, mine.reshape(-1)])) - inside_mean[c], 0)
            depths.append(depth)
            disc_source.append(s)
            disc_at.append((cy, cx))
    depth_arr = np.asarray(depths, dtype=np.float64).reshape(-1, k)
    source_arr = np.asarray(disc_source, dtype=np.int64)
    at_arr = np.asarray(disc_at, dtype=np.float64).reshape(-1, 2)

    mean_level = flat[:, fitted.reshape(-1)].mean(axis=1) if fitted.any() else np.zeros(k)
    out = np.full(k, np.nan)
    counts = np.zeros(k, dtype=np.int64)
    for c in range(k):
        use = ~owned[c, source_arr] if source_arr.size else np.zeros(0, dtype=bool)
        mine = np.concatenate([discs[s] for s in np.flatnonzero(owned[c])] + [np.zeros((0, 2))])
        if mine.size and use.any():
            gap = np.hypot(
                at_arr[:, None, 0] - mine[None, :, 0], at_arr[:, None, 1] - mine[None, :, 1]
            )
            use &= gap.min(axis=1) >= 2.0 * radius
        use &= np.isfinite(depth_arr[:, c])
        counts[c] = int(use.sum())
        if counts[c] and mean_level[c] > 0:
            out[c] = float(depth_arr[use, c].mean() / mean_level[c])
    finite = np.isfinite(out)
    worst = int(np.nanargmax(out)) if finite.any() else -1
    attrs: dict[str, Any] = {
        "worst_hole_depth": float(out[worst]) if worst >= 0 else math.nan,
        "worst_component": worst,
        "disc_radius_px": float(radius),
        "beam_centre_px": [float(centre[0]), float(centre[1])],
        "disc_threshold": float(disc_threshold),
        "arc_offset": [float(arc_offset[0]), float(arc_offset[1])],
    }
    coords = {
        "component": result["component"].values if "component" in result.coords else np.arange(k)
    }
    return xr.Dataset(
        {
            "hole_depth": (("component",), out),
            "matched_source": (("component",), own),
            "owned_sources": (("component", "source"), owned),
            "n_discs": (("component",), counts),
        },
        coords={**coords, "source": np.arange(n_src)},
        attrs=attrs,
    )


#: A component owns a precipitate source whose pattern makes at least this share of its
#: diffraction (non-negative least squares on the true patterns, as in
#: :func:`pattern_mixture`): its discs there are peaks of the component, not holes, and they
#: would bias the arcs beside other sources' discs.
OWN_SHARE = 0.1


def _owned_sources(
    fp: np.ndarray, tp: np.ndarray, fitted: np.ndarray, per_source: np.ndarray,
    crystal: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Return ``(K, n_src)`` bool: the matched sources and every precipitate a component holds.

    ``fp`` ``(K, k_y, k_x)`` diffractions, ``tp`` ``(n_src, k_y, k_x)`` true patterns,
    ``fitted`` ``(k_y, k_x)`` pixels to use, ``per_source`` ``(n_src,)`` each source's matched
    component (-1: none; a group of alike sources shares one), ``crystal`` ``(n_src,)`` which
    sources are precipitates.
    """
    k, n_src = fp.shape[0], tp.shape[0]
    owned = np.zeros((k, n_src), dtype=bool)
    used = fitted.reshape(-1)
    basis = _unit_sum(tp.reshape(n_src, -1)[:, used])
    for s, c in enumerate(per_source):
        if 0 <= c < k:
            owned[c, s] = True
    for c in range(k):
        if used.any() and fp[c].reshape(-1)[used].sum() > 0:
            shares, _ = _shares(fp[c].reshape(-1)[used], basis)
            owned[c] |= crystal & (shares >= OWN_SHARE)
    return owned


def _unit_sum(rows: np.ndarray) -> np.ndarray:
    """``(n, M)`` rows each scaled to sum 1 (empty rows stay zero)."""
    return rows / np.maximum(rows.sum(axis=1, keepdims=True), 1e-300)


def _shares(pattern: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative least-squares shares of ``basis`` ``(n, M)`` rows in a ``(M,)`` pattern.

    The pattern is scaled to sum 1 first; returns the ``(n,)`` shares and the residual's
    norm relative to the scaled pattern's.
    """
    scaled = pattern / max(float(pattern.sum()), 1e-300)
    shares, rnorm = nnls(basis.T, scaled)
    return shares, rnorm / max(float(np.linalg.norm(scaled)), 1e-300)


def hole_depth_of_truth(
    truth: xr.Dataset,
    *,
    noise_like: xr.Dataset | None = None,
    match: xr.Dataset | None = None,
    seed: int = 0,
    **kw: Any,
) -> xr.Dataset:
    """:func:`hole_depth` of the true patterns, each source a component matched to itself.

    The reference level of the measure: real patterns have no artificial dips, so what they
    score is the measure's floor (halo curvature, point-spread tails, disc overlaps). The
    measure takes each disc's depth at zero or above, so counting noise alone scores too:
    with ``noise_like``, a fit's result, each true pattern carries the counting noise of
    the component matched to it (``diffraction_sigma``, Gaussian, drawn with ``seed``):
    the level a fit without artificial dips would reach at that dose.

    Parameters
    ----------
    truth
        A simulated scan with ``true_patterns``.
    noise_like
        A result with ``diffractions``, ``diffraction_sigma`` and ``fit_mask``
        (:class:`~dask_stemnmf.ConstrainedNMF`'s), or ``None`` for noise-free patterns.
    match
        :func:`match_to_truth` of ``noise_like``; computed when omitted.
    seed
        Seed of the noise.
    **kw
        ``disc_threshold`` and ``arc_offset`` of :func:`hole_depth`.

    Returns
    -------
    xarray.Dataset
        As :func:`hole_depth`, along ``component`` = the sources.
    """
    if "true_patterns" not in truth.variables:
        raise InputError("truth lacks true_patterns; pass a simulated scan")
    patterns = truth["true_patterns"]
    values = np.asarray(patterns.values, dtype=np.float64)
    variables: dict[str, Any] = {}
    if noise_like is not None:
        if "diffraction_sigma" not in noise_like.variables:
            raise InputError("noise_like needs diffraction_sigma: pass a ConstrainedNMF result")
        values = _with_noise_of(values, truth, noise_like, match, seed)
        variables["fit_mask"] = noise_like["fit_mask"].variable
    variables["diffractions"] = (("component", *patterns.dims[1:]), values)
    as_result = xr.Dataset(
        variables,
        coords={
            "component": np.asarray(
                truth["source"].values if "source" in truth.coords else np.arange(patterns.shape[0])
            )
        },
    )
    identity = np.arange(patterns.shape[0])
    return hole_depth(as_result, truth, match=identity, **kw)


def _with_noise_of(
    patterns: np.ndarray, truth: xr.Dataset, result: xr.Dataset, match: xr.Dataset | None,
    seed: int,
) -> np.ndarray:  # fmt: skip
    """Return the true patterns with the counting noise of their matched components.

    ``(source, k_y, k_x)``, each summing to 1 over the fitted pixels, plus Gaussian noise of
    its matched component's ``diffraction_sigma`` over that component's sum; unmatched
    sources stay noise-free.
    """
    if match is None:
        match = match_to_truth(result, truth)
    used = np.asarray(result["fit_mask"].values, dtype=bool)
    rng = np.random.default_rng(seed)
    sigma = np.asarray(result["diffraction_sigma"].values, dtype=np.float64)
    sums = np.asarray(result["diffractions"].values, dtype=np.float64).sum(axis=(1, 2))
    out = patterns * used
    out = out / np.maximum(out.sum(axis=(1, 2), keepdims=True), 1e-300)
    for source, component in enumerate(np.asarray(match["component"].values)):
        if component < 0 or sums[component] <= 0:
            continue
        noise = rng.normal(size=used.shape) * sigma[component] / sums[component]
        out[source] = np.maximum(out[source] + noise * used, 0.0)
    return out


def pattern_mixture(
    result: xr.Dataset, truth: xr.Dataset, *, match: xr.Dataset | None = None
) -> xr.Dataset:
    """Decompose each matched component's diffraction into shares of the true patterns.

    A low diffraction cosine has two different causes: noise and artefacts, or a *mixture*
    of true sources, which fits the data exactly as well (moving a share ``a`` of source
    ``h``'s pattern into component ``p``'s and ``a`` times ``p``'s map into ``h``'s map leaves
    ``C S^T`` unchanged, and stays non-negative while ``h``'s map is larger than ``a`` times
    ``p``'s: an amorphous matrix under a precipitate). Each matched component's diffraction,
    over the fitted pixels and scaled to sum 1, is decomposed by non-negative least squares on
    the true patterns (each scaled to sum 1 over the same pixels).

    Parameters
    ----------
    result
        A decomposition: ``diffractions (component, *signal)``, optionally ``fit_mask``.
    truth
        A simulated scan with ``true_patterns (source, *signal)`` (and ``true_maps``, for the
        matching when ``match`` is omitted).
    match
        The output of :func:`match_to_truth`; computed when omitted.

    Returns
    -------
    xarray.Dataset
        ``mixture (source, part)``: the share of each true pattern ``part`` in the component
        matched to ``source`` (rows sum to about 1 when the residual is small);
        ``own_share (source)``: its own pattern's share (its group's, where ``match`` grouped
        alike sources); ``residual (source)``: the relative norm of what no combination of
        true patterns explains (noise, artefacts). NaN for unmatched sources.
    """
    if match is None:
        match = match_to_truth(result, truth)
    n_src, k = truth.sizes["source"], result.sizes["component"]
    tp = np.asarray(truth["true_patterns"].values, dtype=np.float64).reshape(n_src, -1)
    fp = np.asarray(result["diffractions"].values, dtype=np.float64).reshape(k, -1)
    if "fit_mask" in result.variables:
        used = np.asarray(result["fit_mask"].values, dtype=bool).reshape(-1)
        tp, fp = tp[:, used], fp[:, used]
    tp = _unit_sum(tp)
    mixture = np.full((n_src, n_src), np.nan)
    residual = np.full(n_src, np.nan)
    for source, component in enumerate(np.asarray(match["component"].values)):
        if component < 0:
            continue
        mixture[source], residual[source] = _shares(fp[component], tp)
    sources = truth["source"].values if "source" in truth.coords else np.arange(n_src)
    group = np.asarray(match["group"].values) if "group" in match else np.arange(n_src)
    own = np.array([mixture[s, group == group[s]].sum() for s in range(n_src)])
    return xr.Dataset(
        {
            "mixture": (("source", "part"), mixture),
            "own_share": (("source",), own),
            "residual": (("source",), residual),
        },
        coords={"source": sources, "part": sources},
    )
