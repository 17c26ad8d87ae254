"""Soak: many consecutive fits in one client; memory before and after, spread of fit times.

python -m benchmarks.soak --fits 20
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from dask_stemnmf import classify, decompose, open_4dstem, simulate_scan  # noqa: E402
from dask_stemnmf.errors import ConvergenceWarning  # noqa: E402


def _rss() -> int:
    return psutil.Process().memory_info().rss


def main(argv: list[str] | None = None) -> None:
    """Run the fits and print the figures."""
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fits", type=int, default=20)
    parser.add_argument("--scan", type=int, default=64)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3, help="fits before measuring")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        store = tmp / "scan.zarr"
        kw = {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
        with LocalCluster(memory_limit="2GiB", **kw) as cluster, Client(cluster) as client:
            simulate_scan(store, scan=(args.scan, args.scan), detector=(64, 64), seed=4,
                          precipitates=8, chunks=(16, args.scan))  # fmt: skip

            def one_fit(seed: int) -> float:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    result = decompose(open_4dstem(store), args.k, map_resolution_nm="probe",
                                       max_iter=40, random_state=seed)  # fmt: skip
                    classify(result)
                return time.perf_counter() - start

            warm = [one_fit(1000 + i) for i in range(args.warmup)]  # imports, numba compilation
            client.run(gc.collect)
            gc.collect()
            before = client.run(_rss)
            driver_before = _rss()
            times, workers, driver = [], [], []
            for i in range(args.fits):
                times.append(one_fit(i))
                workers.append(sum(client.run(_rss).values()))
                driver.append(_rss())
            client.run(gc.collect)
            gc.collect()
            after = client.run(_rss)
            driver_after = _rss()
        mib = 2**20
        n = args.fits
        print(
            f"after {args.warmup} warm-up fits, {n} fits of a {args.scan}x{args.scan} x 64x64 "
            f"scan, K={args.k}, with the map and continuity constraints, then classify"
        )
        print(
            f"workers' RSS before / after, MiB   {sum(before.values()) / mib:.0f} / "
            f"{sum(after.values()) / mib:.0f}"
        )
        for name, series in (("workers", workers), ("driver (hosts the scheduler)", driver)):
            a, b = np.mean(series[:5]) / mib, np.mean(series[-5:]) / mib
            print(
                f"  {name}: mean after fits 1-5 / {n - 4}-{n}  {a:.0f} / {b:.0f} MiB "
                f"(change {b - a:+.0f} MiB)"
            )
        print(
            f"driver RSS before / after, MiB    {driver_before / mib:.0f} / "
            f"{driver_after / mib:.0f}"
        )
        t = np.asarray(times)
        print(
            f"fit time min / median / max, s   {t.min():.2f} / {np.median(t):.2f} / "
            f"{t.max():.2f} (max over min {t.max() / t.min():.2f})"
        )
        print(
            f"warm-up fits (imports, numba compilation, not counted), s "
            f"{', '.join(f'{w:.2f}' for w in warm)}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
