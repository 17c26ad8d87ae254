"""Classify a decomposition's components: crystalline or not, then by phase whatever the rotation.

The steps (``DESIGN.md`` section 5), all on the driver since a decomposition has tens of
components:

1. each diffraction's *crystallinity*: the share of its polar pattern's variance that lies
   along the azimuth (Bragg spots vary with angle; the amorphous halo and the direct beam do
   not). Components below ``crystallinity_threshold`` are the direct beam (most of their
   intensity inside the bright-field disc) or amorphous;
2. the crystalline components' rotation-invariant similarity
   (:func:`dask_stemnmf.rotational_similarity`) and hierarchical clustering of
   ``1 - rho`` (scipy; average linkage by default), cut by distance, by number of classes, or
   by default in the largest relative gap between merge heights (never below
   ``min_distance``, so that one phase is not split by noise);
3. per class: the rotation-aligned mean diffraction, the class map (sum of the members'
   maps) and a precipitate table from the connected regions of the class map, split by
   member: where a member's map exceeds ``region_threshold`` of its maximum (regions that
   overlap by more than half are one precipitate).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from ._kernels.masks import disc_mask, find_bright_field_disc
from ._kernels.polar import rotate_pattern
from .errors import InputError
from .similarity import polar_patterns, rotational_similarity

__all__ = ["classify", "crystallinity", "cut_height"]

#: ``class_label`` of components that are not crystalline.
AMORPHOUS, DIRECT_BEAM = -1, -2


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


def cut_height(merge_heights: np.ndarray, min_distance: float) -> float:
    """Default cut of a dendrogram: in the largest relative gap between merge heights.

    Distances within one phase are noise-sized and those between phases are not, so the gap
    that separates them is the largest *ratio* of consecutive heights (an absolute gap is
    fooled by two well-separated phases merging high). Heights below ``min_distance / 2``
    count as that, and the cut, at the geometric middle of the chosen gap, is never below
    ``min_distance``: items closer than that always share a class.

    Parameters
    ----------
    merge_heights
        ``(n - 1,)`` heights of the merges (distances ``1 - rho``).
    min_distance
        The lowest cut.

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
    return float(max(np.sqrt(levels[i] * levels[i + 1]), min_distance))


def _scan_coord(coord: xr.DataArray, index: float) -> float:
    values = np.asarray(coord.values, dtype=np.float64)
    return float(np.interp(index, np.arange(values.size), values))


def _step(coord: xr.DataArray) -> float:
    values = np.asarray(coord.values, dtype=np.float64)
    return float(abs(values[1] - values[0])) if values.size > 1 else 1.0


def classify(
    result: xr.Dataset,
    *,
    distance_threshold: float | None = None,
    n_classes: int | None = None,
    linkage: Literal["average", "complete", "single"] = "average",
    min_distance: float = 0.25,
    crystallinity_threshold: float = 0.35,
    region_threshold: float = 0.5,
    centre: Any = "auto",
    central_mask_px: float | None = None,
    n_angles: int = 360,
    scaling: Literal["none", "sqrt", "log"] = "sqrt",
) -> xr.Dataset:
    """Classify the components of a decomposition by rotation-invariant diffraction similarity.

    Parameters
    ----------
    result
        A decomposition (``ConstrainedNMF().result_``, ``decompose``): ``maps (component,
        scan_y, scan_x)`` and ``diffractions (component, k_y, k_x)``.
    distance_threshold, n_classes
        Cut the dendrogram at this distance ``1 - rho``, or into this many classes (at most
        one of them); default in the largest relative gap between merge heights
        (:func:`cut_height`).
    linkage
        ``"average"`` (default), ``"complete"`` or ``"single"`` (Ward assumes Euclidean
        distances and does not apply).
    min_distance
        The default cut is never below this distance.
    crystallinity_threshold
        Components whose crystallinity is below this are not crystalline.
    region_threshold
        A precipitate is a connected region where a member's map exceeds this fraction of its
        maximum.
    centre, central_mask_px, n_angles, scaling
        Polar-transform options (:func:`dask_stemnmf.similarity.polar_patterns`); the
        central-beam mask defaults to the result's bright-field disc when it has one.

    Returns
    -------
    xarray.Dataset
        Along ``component``: ``class_label`` (0.. crystalline classes, -1 amorphous, -2 direct
        beam), ``kind``, ``crystallinity``, ``rotation_deg`` (from its class's reference);
        ``similarity`` and ``angle_deg`` ``(component, component_2)`` (crystalline pairs;
        NaN otherwise); along ``class``: ``class_pattern (class, k_y, k_x)`` (rotation-aligned
        mean, sums to 1), ``class_map (class, scan_y, scan_x)``, ``class_size``; along
        ``precipitate``: ``precipitate_class``, ``centroid_y_nm``, ``centroid_x_nm``,
        ``area_nm2``, ``precipitate_rotation_deg``, ``precipitate_component``; ``linkage``
        ``(merge, 4)`` (scipy's, over the crystalline components in order) and
        ``dendrogram_order``; attrs with the cut and the options.
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
    patterns = np.asarray(result["diffractions"].values, dtype=np.float64)
    maps = np.asarray(result["maps"].values, dtype=np.float64)
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
    crystalline = np.flatnonzero(score >= crystallinity_threshold)
    label = np.full(k, AMORPHOUS, dtype=np.int64)
    kind = np.array(["amorphous"] * k, dtype=object)
    if not disc:
        disc = _mean_disc(patterns, maps)
    for j in np.flatnonzero(score < crystallinity_threshold):
        if _direct_beam(patterns[j], disc):
            label[j], kind[j] = DIRECT_BEAM, "direct beam"
    kind[crystalline] = "crystalline"
    sim = np.full((k, k), np.nan)
    ang = np.full((k, k), np.nan)
    link = np.zeros((0, 4))
    order = np.zeros(0, dtype=np.int64)
    cut = float("nan")
    rotation = np.full(k, np.nan)
    if crystalline.size:
        rho, angle = rotational_similarity(
            patterns[crystalline], centre=centre_px, central_mask_px=central_mask_px,
            n_angles=n_angles, scaling=scaling,
        )  # fmt: skip
        sim[np.ix_(crystalline, crystalline)] = rho
        ang[np.ix_(crystalline, crystalline)] = angle
        groups, link, order, cut = _cluster(
            rho, linkage, distance_threshold, n_classes, min_distance
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
    table = _precipitates(result, maps, label, rotation, n_cls, region_threshold)
    return _dataset(result, locals_=dict(
        label=label, kind=kind, score=score, rotation=rotation, sim=sim, ang=ang,
        class_pattern=class_pattern, class_map=class_map, size=size, table=table,
        link=link, order=order, cut=cut,
    ), options={
        "linkage_method": linkage, "cut_distance": cut,
        "distance_threshold": "none" if distance_threshold is None else distance_threshold,
        "n_classes_requested": "none" if n_classes is None else n_classes,
        "min_distance": min_distance, "crystallinity_threshold": crystallinity_threshold,
        "region_threshold": region_threshold, "n_angles": n_angles, "scaling": scaling,
        "centre_px": list(centre_px), "central_mask_px": central_mask_px or 0.0,
    })  # fmt: skip


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
            else cut_height(link[:, 2], min_distance)
        )
        raw = hierarchy.fcluster(link, t=cut, criterion="distance")
    # number classes by their first appearance in the dendrogram order
    renumber: dict[int, int] = {}
    for leaf in order:
        renumber.setdefault(int(raw[leaf]), len(renumber))
    labels = np.array([renumber[int(v)] for v in raw], dtype=np.int64)
    return labels, link, order.astype(np.int64), float(cut)


def _precipitates(
    result: xr.Dataset,
    maps: np.ndarray,
    label: np.ndarray,
    rotation: np.ndarray,
    n_cls: int,
    threshold: float,
) -> dict[str, np.ndarray]:
    """Tabulate the precipitates: connected regions of the class maps, split by member.

    Each member's map above ``threshold`` of its maximum gives connected regions; regions of
    one class that overlap by more than half of the smaller are one precipitate (a particle
    shared by two components), so that two touching precipitates of one phase, seen by two
    components, stay two while the class map would join them.
    """
    ys, xs = result["scan_y"], result["scan_x"]
    pixel_area = _step(ys) * _step(xs)
    rows: list[tuple[int, float, float, float, float, int]] = []
    for c in range(n_cls):
        members = np.flatnonzero(label == c)
        regions: list[tuple[np.ndarray, int]] = []
        for j in members:
            peak = maps[j].max()
            if peak <= 0:
                continue
            labelled, n = ndimage.label(maps[j] > threshold * peak)
            regions.extend((labelled == r, int(j)) for r in range(1, n + 1))
        groups: list[list[tuple[np.ndarray, int]]] = []
        for region in regions:
            for group in groups:
                union = np.logical_or.reduce([g[0] for g in group])
                small = min(int(region[0].sum()), int(union.sum()))
                if np.logical_and(union, region[0]).sum() > 0.5 * small:
                    group.append(region)
                    break
            else:
                groups.append([region])
        class_map = maps[members].sum(axis=0)
        yy, xx = np.indices(class_map.shape)
        for group in groups:
            inside = np.logical_or.reduce([g[0] for g in group])
            w = np.where(inside, class_map, 0.0)
            if w.sum() <= 0:
                continue
            cy = float((w * yy).sum() / w.sum())
            cx = float((w * xx).sum() / w.sum())
            main = max(group, key=lambda g: float(maps[g[1]][g[0]].sum()))[1]
            rows.append((
                c, _scan_coord(ys, cy), _scan_coord(xs, cx), float(inside.sum()) * pixel_area,
                float(rotation[main]), int(main),
            ))  # fmt: skip
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(6)]
    return {
        "precipitate_class": np.asarray(cols[0], dtype=np.int64),
        "centroid_y_nm": np.asarray(cols[1], dtype=np.float64),
        "centroid_x_nm": np.asarray(cols[2], dtype=np.float64),
        "area_nm2": np.asarray(cols[3], dtype=np.float64),
        "precipitate_rotation_deg": np.asarray(cols[4], dtype=np.float64),
        "precipitate_component": np.asarray(cols[5], dtype=np.int64),
    }


def _dataset(result: xr.Dataset, locals_: dict[str, Any], options: dict[str, Any]) -> xr.Dataset:
    v = locals_
    k = v["label"].size
    n_cls = v["class_map"].shape[0]
    sig = tuple(result["diffractions"].dims[1:])
    data: dict[str, Any] = {
        "class_label": (("component",), v["label"]),
        "kind": (("component",), v["kind"].astype(str)),
        "crystallinity": (("component",), v["score"]),
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
