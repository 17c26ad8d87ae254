"""Ground-truth recovery on simulated scans: the table behind the engine's defaults.

For each dose and each method, fits a simulated scan of crystalline precipitates in a metallic
glass with as many components as true sources, matches components to sources
(:func:`dask_stemnmf.match_to_truth`, Hungarian on the diffractions' cosine, compared on the
pixels outside the bright-field disc for every method) and prints, over the precipitates,
the minimum and mean cosine of diffractions and maps, the number of significant dips left in
the diffractions (pixels a one-pixel closing raises by more than 5 % of the pattern's
maximum, outside the disc), the fit's relative residual and the seconds taken.

    python -m benchmarks.recovery --doses 500,1000,5000 --seeds 7,8
"""

from __future__ import annotations

import argparse
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

from dask_stemnmf import decompose, match_to_truth, pca, simulate_scan  # noqa: E402
from dask_stemnmf._kernels.constraints import dip_depth  # noqa: E402
from dask_stemnmf.errors import ConvergenceWarning  # noqa: E402
from dask_stemnmf.nmf.calibration import default_continuity_radius  # noqa: E402

FIT = {"max_iter": 300, "tol": 1e-5}
PRIMITIVE = {"diffraction_continuity": False, **FIT}
BOTH = {"map_resolution_nm": "probe", "diffraction_continuity": True, **FIT}

#: name -> how to fit ``(scan, k)``.
METHODS: dict[str, Callable[[xr.Dataset, int], xr.Dataset]] = {
    "PCA": lambda ds, k: pca(ds, k),
    "primitive NMF, no mask": lambda ds, k: decompose(ds, k, bright_field_mask=None, **PRIMITIVE),
    "primitive NMF + mask": lambda ds, k: decompose(ds, k, **PRIMITIVE),
    "map constraint + mask": lambda ds, k: decompose(
        ds, k, map_resolution_nm="probe", diffraction_continuity=False, **FIT
    ),
    "continuity + mask": lambda ds, k: decompose(ds, k, **FIT),
    "both + mask (defaults)": lambda ds, k: decompose(ds, k, **BOTH),
    "both + mask, no noise floor": lambda ds, k: decompose(
        ds, k, dip_threshold=0.04, dip_sigma=0.0, **BOTH
    ),
    "both + mask, closing of a disc radius": lambda ds, k: decompose(
        ds, k, continuity_radius_px=2 * _half_disc(ds), **BOTH
    ),
    "noise normalisation, no mask": lambda ds, k: decompose(
        ds, k, noise_normalisation=True, bright_field_mask=None, **PRIMITIVE
    ),
    "noise normalisation + mask": lambda ds, k: decompose(
        ds, k, noise_normalisation=True, **PRIMITIVE
    ),
    "both + noise normalisation + mask": lambda ds, k: decompose(
        ds, k, noise_normalisation=True, **BOTH
    ),
    "KL (mu) + mask": lambda ds, k: decompose(
        ds, k, solver="mu", loss="kl", diffraction_continuity=False, **FIT
    ),
}


def _half_disc(ds: xr.Dataset) -> float:
    return default_continuity_radius(ds, ("k_y", "k_x"))


def significant_dips(result: xr.Dataset, used: np.ndarray) -> int:
    """Pixels of all diffractions that a one-pixel closing raises by > 5 % of the maximum."""
    total = 0
    for pattern in np.asarray(result["diffractions"].values, dtype=np.float64):
        depth = dip_depth(np.maximum(pattern, 0) * used, 1.0)
        total += int(((depth > 0.05 * pattern.max()) & used).sum())
    return total


def score(ds: xr.Dataset, name: str, used: np.ndarray) -> dict[str, Any]:
    """Fit one method and score it against the truth."""
    k = ds.sizes["source"]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = METHODS[name](ds, k)
    seconds = time.perf_counter() - start
    match = match_to_truth(result, ds, pixels=used)
    crystals = slice(2, None)  # sources 0 and 1 are the direct beam and the matrix
    d = match["diffraction_cosine"].values[crystals]
    m = match["map_cosine"].values[crystals]
    loss = float(result["loss"].values[-1]) if "loss" in result else float("nan")
    dips = significant_dips(result, used) if name != "PCA" else -1
    return {"d": d, "m": m, "loss": loss, "dips": dips, "s": seconds}


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doses", default="500,1000,5000")
    parser.add_argument("--seeds", default="7")
    parser.add_argument("--scan", default="48x48")
    parser.add_argument("--detector", default="48x48")
    parser.add_argument("--precipitates", type=int, default=6)
    parser.add_argument("--phases", type=int, default=2)
    parser.add_argument("--diameter", default="1,5", help="precipitate diameters in nm, min,max")
    parser.add_argument("--methods", default="", help="semicolon-separated subset of the names")
    args = parser.parse_args(argv)
    scan = tuple(int(v) for v in args.scan.split("x"))
    detector = tuple(int(v) for v in args.detector.split("x"))
    lo, hi = (float(v) for v in args.diameter.split(","))
    names = [n for n in METHODS if not args.methods or n in args.methods.split(";")]
    dask.config.set(scheduler="threads", num_workers=2)
    print("| dose | method | diffraction cos min / mean | map cos min / mean | dips | loss | s |")
    print("|---|---|---|---|---|---|---|")
    for dose in (float(v) for v in args.doses.split(",")):
        rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for seed in (int(v) for v in args.seeds.split(",")):
            ds = simulate_scan(
                scan=scan, detector=detector, precipitates=args.precipitates,
                phases=args.phases, dose=dose, seed=seed, chunks=(scan[0] // 2, scan[1]),
                precipitate_diameter_nm=(lo, hi),
            ).persist()  # fmt: skip
            used = decompose(ds, 1, max_iter=1, diffraction_continuity=False)["fit_mask"].values
            for name in names:
                rows[name].append(score(ds, name, used))
        for name in names:
            d = np.concatenate([r["d"] for r in rows[name]])
            m = np.concatenate([r["m"] for r in rows[name]])
            dips = sum(r["dips"] for r in rows[name])
            loss = np.mean([r["loss"] for r in rows[name]])
            secs = np.mean([r["s"] for r in rows[name]])
            print(
                f"| {dose:g} | {name} | {d.min():.2f} / {d.mean():.2f} | "
                f"{m.min():.2f} / {m.mean():.2f} | {dips if dips >= 0 else '-'} | "
                f"{loss:.4f} | {secs:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
