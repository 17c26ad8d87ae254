"""Ground-truth recovery over a grid of scans from two generators: the table behind the defaults.

For every cell of the grid (generator x dose x probe sampling x disc softness and detector
blur) a scan is simulated with its ground truth, each method fits it with as many components
as true sources, and the components are matched to the sources
(:func:`dask_stemnmf.match_to_truth`, Hungarian on the diffractions' cosine outside the
bright-field disc). Printed per cell and method, over the *visible* precipitates (diameter at
least 1.5 nm and at least the probe's FWHM):

- pattern and map cosine, mean and minimum;
- own share: the mean share of each visible precipitate's own true pattern in its matched
  component's diffraction (:func:`dask_stemnmf.evaluate.pattern_mixture`; the rest is
  mostly the amorphous halo, a mixture that fits the data as well);
- dips: pixels of all diffractions that a one-pixel closing raises by more than 5 % of the
  pattern's maximum (outside the disc);
- holes: the worst component's hole depth (:func:`dask_stemnmf.evaluate.hole_depth`, the
  artefact of Kimoto et al.'s Fig. 1c; the true patterns give at most about 0.1) and, in
  brackets, that of the true patterns carrying the fitted components' counting noise
  (:func:`dask_stemnmf.evaluate.hole_depth_of_truth` with ``noise_like``): each disc's depth
  counts at zero or above, so noise alone scores, and this is the level a fit without
  artificial dips reaches at that dose;
- ARI: adjusted Rand index of :func:`dask_stemnmf.classify`'s default cut against the true
  phases, over the visible precipitates' matched components;
- alike: visible precipitates scored with another because their true patterns are alike
  (cosine at least ``--alike``, default 0.9, the fit's own ``merge_threshold``: one phase in
  one orientation in two places is one diffraction, one component whose map holds both;
  the cosines, own share and ARI count such a group once);
- found: rows of the precipitate table against the visible precipitates.

Methods: ``defaults`` is ``ConstrainedNMF(K).fit(scan)`` exactly as a user calls it;
``probe`` limits the maps to the probe's resolution alone (``map_resolution_nm="probe"``;
the default ``"auto"`` also takes the dose-limited resolution when it is coarser);
``unmerged`` never merges duplicate components (``merge_threshold=None``);
``primitive`` turns both constraints off; ``PCA``;
``sklearn`` is an expert scikit-learn NMF (coordinate descent, NNDSVDa, on the same pixels,
bright-field disc masked, 1,000 iterations). The second generator,
:mod:`benchmarks.kinematic`, needs the ``validation`` extra (diffsims).

    python -m benchmarks.recovery --generators ours,kinematic --doses 1500,4000 \\
        --probe-px 2.9,4.5 --blur soft
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dask  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from dask_stemnmf import ConstrainedNMF, classify, match_to_truth, pca, simulate_scan  # noqa: E402
from dask_stemnmf._kernels.constraints import dip_depth  # noqa: E402
from dask_stemnmf.errors import ConvergenceWarning, StemNMFWarning  # noqa: E402
from dask_stemnmf.evaluate import hole_depth, hole_depth_of_truth, pattern_mixture  # noqa: E402

#: Disc softness and detector blur: (disc edge sigma, PSF core sigma, PSF tail weight), px.
BLUR = {"sharp": (0.0, 0.3, 0.0), "soft": (1.0, 1.0, 0.05)}


def _sklearn(ds: xr.Dataset, k: int, used: np.ndarray) -> xr.Dataset:
    """An expert scikit-learn NMF on the fitted pixels, shaped like a fit result."""
    from sklearn.decomposition import NMF

    ny, nx = ds.sizes["scan_y"], ds.sizes["scan_x"]
    d = np.asarray(ds["intensity"].values, dtype=np.float32).reshape(ny * nx, -1)
    flat = used.reshape(-1)
    model = NMF(k, init="nndsvda", solver="cd", max_iter=1000, tol=1e-6, random_state=0)
    w = model.fit_transform(d[:, flat])
    h = np.zeros((k, flat.size), dtype=np.float64)
    h[:, flat] = model.components_
    scale = np.maximum(h.sum(axis=1), 1e-300)
    return xr.Dataset(
        {
            "maps": (("component", "scan_y", "scan_x"), (w * scale).T.reshape(k, ny, nx)),
            "diffractions": (
                ("component", "k_y", "k_x"), (h / scale[:, None]).reshape(k, *used.shape)
            ),
            "fit_mask": (("k_y", "k_x"), used),
        },
        coords={d: ds[d] for d in ("scan_y", "scan_x", "k_y", "k_x")},
    )


#: name -> how to fit ``(scan, k, fitted pixels)``.
METHODS: dict[str, Callable[[xr.Dataset, int, np.ndarray], xr.Dataset]] = {
    "defaults": lambda ds, k, used: ConstrainedNMF(k).fit(ds).result_,
    "probe": lambda ds, k, used: ConstrainedNMF(k, map_resolution_nm="probe").fit(ds).result_,
    "unmerged": lambda ds, k, used: ConstrainedNMF(k, merge_threshold=None).fit(ds).result_,
    "primitive": lambda ds, k, used: ConstrainedNMF(
        k, map_resolution_nm=None, diffraction_continuity=False, merge_threshold=None,
        separate_halo=False,
    ).fit(ds).result_,
    "PCA": lambda ds, k, used: pca(ds, k),
    "sklearn": _sklearn,
}


#: True sources whose patterns have a cosine of at least this are one source to the score:
#: the defaults' ``merge_threshold``, so a pair the fit is not let to keep apart is not
#: asked of it (a phase in the same orientation twice: one diffraction, two regions).
ALIKE: float = inspect.signature(ConstrainedNMF).parameters["merge_threshold"].default


def significant_dips(result: xr.Dataset, used: np.ndarray) -> int:
    """Pixels of all diffractions that a one-pixel closing raises by > 5 % of the maximum."""
    total = 0
    for pattern in np.asarray(result["diffractions"].values, dtype=np.float64):
        depth = dip_depth(np.maximum(pattern, 0) * used, 1.0)
        total += int(((depth > 0.05 * pattern.max()) & used).sum())
    return total


def visible(ds: xr.Dataset) -> np.ndarray:
    """Indices of the visible precipitate sources: at least 1.5 nm and the probe across."""
    radius = np.asarray(ds["true_radius"].values, dtype=np.float64)
    fwhm = float(ds.attrs.get("probe_fwhm_nm", 0.0))
    return np.flatnonzero(np.nan_to_num(2 * radius) >= max(1.5, fwhm))


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labellings."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b)) if a.size > 1 else float("nan")


def one_per_group(sources: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The first of ``sources`` from each group of alike true sources (``group`` per source)."""
    _, first = np.unique(group[sources], return_index=True)
    return np.sort(sources[first])


def score(
    ds: xr.Dataset, name: str, used: np.ndarray, alike: float | None = ALIKE
) -> dict[str, Any]:
    """Fit one method and score it against the truth.

    Visible sources whose true patterns are ``alike`` (:func:`match_to_truth`) are scored as
    one: the cosines, own share and ARI count each group once; ``visible`` counts them all
    (the precipitate table lists regions) and ``alike`` how many were joined to another.
    """
    k = ds.sizes["source"]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", StemNMFWarning)
        result = METHODS[name](ds, k, used)
    seconds = time.perf_counter() - start
    match = match_to_truth(result, ds, pixels=used, alike=alike)
    regions = visible(ds)
    seen = one_per_group(regions, match["group"].values)
    out: dict[str, Any] = {
        "d": match["diffraction_cosine"].values[seen],
        "m": match["map_cosine"].values[seen],
        "s": seconds,
        "iters": int(result.attrs.get("n_iter", 0)),
        "visible": regions.size,
        "alike": regions.size - seen.size,
    }
    if name == "PCA":
        nan = float("nan")
        return {**out, "dips": -1, "holes": nan, "holes_noise": nan, "own": nan, "ari": nan,
                "found": -1}  # fmt: skip
    out["own"] = float(pattern_mixture(result, ds, match=match)["own_share"].values[seen].mean())
    out["dips"] = significant_dips(result, used)
    out["holes"] = float(hole_depth(result, ds, match=match)["hole_depth"].max())
    out["holes_noise"] = float("nan")
    if "diffraction_sigma" in result.variables:
        ref = hole_depth_of_truth(ds, noise_like=result, match=match)
        out["holes_noise"] = float(ref["hole_depth"].max())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StemNMFWarning)
            classes = classify(result)
        labels = classes["class_label"].values[match["component"].values[seen]]
        out["ari"] = adjusted_rand(ds["true_class"].values[seen], labels)
        out["found"] = int(classes.sizes["precipitate"])
    except Exception as error:  # a failed classification is a result of the table too
        print(f"  classify failed for {name}: {error}")
        out["ari"], out["found"] = float("nan"), -1
    return out


def make_scan(
    generator: str, dose: float, probe_px: float, blur: str, args: Any,
    precipitates: int, phases: int,
) -> xr.Dataset:  # fmt: skip
    """One scan of the grid, persisted (``args``: seed, scan and detector shapes)."""
    edge, psf, tail = BLUR[blur]
    scan = tuple(int(v) for v in args.scan.split("x"))
    detector = tuple(int(v) for v in args.detector.split("x"))
    common = dict(
        seed=args.seed, scan=scan, detector=detector, precipitates=precipitates,
        phases=phases, dose=dose, disc_edge_px=edge, psf_sigma_px=psf, psf_tail=tail,
    )  # fmt: skip
    if generator == "ours":
        ds = simulate_scan(
            probe_fwhm_nm=probe_px * 0.3, scan_step_nm=0.3, chunks=(scan[0] // 2, scan[1]),
            precipitate_diameter_nm=(1.5, 5.0), **common,
        )  # fmt: skip
    else:
        from benchmarks.kinematic import kinematic_scan

        ds = kinematic_scan(probe_fwhm_px=probe_px, scan_step_nm=0.3, **common)
    return ds.persist()


def fitted_pixels(ds: xr.Dataset) -> np.ndarray:
    """``(k_y, k_x)``: the pixels the defaults fit (the bright-field disc left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ConstrainedNMF(1, max_iter=1, diffraction_continuity=False, map_resolution_nm=None)
        return model.fit(ds).result_["fit_mask"].values


def _cells(args: Any) -> list[tuple[str, float, float, str, int, int]]:
    """The grid's cells: every combination of the comma-separated options."""
    return [
        (generator, float(dose), float(probe), blur, int(n), int(phases))
        for generator in args.generators.split(",")
        for dose in args.doses.split(",")
        for probe in args.probe_px.split(",")
        for blur in args.blur.split(",")
        for n in args.precipitates.split(",")
        for phases in args.phases.split(",")
    ]


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell's scores over several seeds (other draws of the same cell).

    The cosines of every seed's visible precipitates are pooled (so the mean is over all of
    them and the minimum the worst of any seed); ARI, own share, dips, holes, iterations and
    seconds are means over the seeds (NaN seeds left out), found and visible are summed.
    """

    def mean(key: str) -> float:
        values = np.array([r.get(key, np.nan) for r in runs], dtype=np.float64)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    return {
        "d": np.concatenate([r["d"] for r in runs]),
        "m": np.concatenate([r["m"] for r in runs]),
        "own": mean("own"), "ari": mean("ari"), "holes": mean("holes"), "s": mean("s"),
        "holes_noise": mean("holes_noise"),
        "dips": -1 if runs[0]["dips"] < 0 else round(mean("dips")),
        "iters": round(mean("iters")),
        "found": -1 if runs[0]["found"] < 0 else sum(r["found"] for r in runs),
        "visible": sum(r["visible"] for r in runs),
        "alike": sum(r.get("alike", 0) for r in runs),
    }  # fmt: skip


def _row(
    cell: tuple[str, float, float, str, int, int], name: str, r: dict[str, Any], seeds: int = 1
) -> str:
    """One markdown row of the table."""
    generator, dose, probe, blur, n, phases = cell
    d, m = r["d"], r["m"]
    ari = "-" if np.isnan(r["ari"]) else f"{r['ari']:.2f}"
    holes = "-" if np.isnan(r["holes"]) else f"{r['holes']:.2f}"
    noise = r.get("holes_noise", np.nan)
    holes += "" if np.isnan(noise) else f" ({noise:.2f})"
    own = "-" if np.isnan(r["own"]) else f"{r['own']:.2f}"
    dips = "-" if r["dips"] < 0 else str(r["dips"])
    found = "-" if r["found"] < 0 else str(r["found"])
    return (
        f"| {generator} | {dose:g} | {probe:g} | {blur} | {n} | {phases} | {seeds} | {name} | "
        f"{np.nanmean(d):.2f} / {np.nanmin(d):.2f} | {own} | "
        f"{np.nanmean(m):.2f} / {np.nanmin(m):.2f} | "
        f"{dips} | {holes} | {ari} | {r.get('alike', 0)} | {found} / {r['visible']} | "
        f"{r['iters']} | {r['s']:.0f} |"
    )


def main(argv: list[str] | None = None) -> None:
    """Run the grid and print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generators", default="ours,kinematic")
    parser.add_argument("--doses", default="1500,4000")
    parser.add_argument("--probe-px", default="2.9", help="probe FWHM in scan pixels")
    parser.add_argument("--blur", default="soft", help="comma-separated: sharp, soft")
    parser.add_argument("--phases", default="3", help="comma-separated numbers of phases")
    parser.add_argument(
        "--precipitates", default="8",
        help="comma-separated numbers of precipitates (more on the same scan: more overlaps)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1, help="first seed")
    parser.add_argument(
        "--seeds", type=int, default=1,
        help="scans per cell (seeds SEED, SEED+1, ...), pooled into one row per method",
    )  # fmt: skip
    parser.add_argument("--scan", default="48x48")
    parser.add_argument("--detector", default="48x48")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--alike", default=str(ALIKE),
        help="true patterns at least this alike (cosine) are scored as one source; "
        "'none' scores every source apart (default %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    alike = None if args.alike.lower() in ("none", "null", "off") else float(args.alike)
    names = args.methods.split(",")
    header = (
        "| generator | dose | probe px | blur | precipitates | phases | seeds | method | "
        "pattern cos mean / min | own share | map cos mean / min | dips | "
        "holes (truth + noise) | ARI | alike | "
        "found / visible | iters | s |"
    )
    print(header)
    print("|---" * header.count(" | ") + "|---|")
    with dask.config.set(scheduler="threads", num_workers=2):
        for cell in _cells(args):
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for seed in range(args.seed, args.seed + args.seeds):
                ds = make_scan(*cell[:4], argparse.Namespace(**{**vars(args), "seed": seed}),
                               *cell[4:])  # fmt: skip
                used = fitted_pixels(ds)
                for name in names:
                    runs[name].append(score(ds, name, used, alike))
            for name in names:
                print(_row(cell, name, pooled(runs[name]), args.seeds), flush=True)


if __name__ == "__main__":
    main()
