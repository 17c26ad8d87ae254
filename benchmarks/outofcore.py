"""Out-of-core decomposition: a scan several times larger than the workers' memory.

Generates a scan to lz4 zarr, then on two worker processes reports, from one run:

- seconds per iteration streamed from zarr by workers whose memory (together) is a fraction
  of the scan, and held in memory by ample workers, per GiB of stored data;
- the peak RSS of every worker (against its limit) and of the driver;
- that the streamed result equals the held one (the same fit from the same start);
- how the streamed time per iteration grows from 1x to 8x the scan size (prefixes of the
  scan's rows).

    python -m benchmarks.outofcore --scan 512x384 --detector 96x96 --worker-memory 512MiB
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dask  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._memory import TreeMemory  # noqa: E402
from dask_stemnmf import ConstrainedNMF, open_4dstem, simulate_scan  # noqa: E402
from dask_stemnmf.errors import ConvergenceWarning  # noqa: E402


def _pair(text: str) -> tuple[int, int]:
    a, b = (int(v) for v in text.split("x"))
    return a, b


def fit(ds, k, iters, persist):
    """Per-iteration seconds (median between callbacks) and the result."""
    stamps: list[float] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = ConstrainedNMF(
            k, init="random", max_iter=iters + 2, tol=0, map_resolution_nm="probe",
            diffraction_continuity=True, continuity_warm_start=1, persist=persist,
            callback=lambda i, loss: stamps.append(time.perf_counter()),
        ).fit(ds)  # fmt: skip
    return float(np.median(np.diff(stamps[1:]))), model.result_.compute()


def main(argv: list[str] | None = None) -> None:
    """Run and print the figures."""
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", type=_pair, default=(512, 384))
    parser.add_argument("--detector", type=_pair, default=(96, 96))
    parser.add_argument("--chunks", type=_pair, default=(4, 384))
    parser.add_argument("-k", type=int, default=12)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--worker-memory", default="512MiB")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ooc-"))
    cluster_kw = {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    try:
        store = tmp / "scan.zarr"
        start = time.perf_counter()
        with LocalCluster(**cluster_kw) as cluster, Client(cluster):
            simulate_scan(store, scan=args.scan, detector=args.detector, precipitates=24,
                          phases=3, chunks=args.chunks)  # fmt: skip
        scan = open_4dstem(store, chunks=None)
        gib = scan["intensity"].nbytes / 2**30
        limit = dask.utils.parse_bytes(args.worker_memory)
        print(
            f"scan {args.scan[0]}x{args.scan[1]} x {args.detector[0]}x{args.detector[1]} "
            f"uint16 = {gib:.2f} GiB ({gib * 2**30 / (2 * limit):.1f}x the 2 workers' "
            f"{2 * limit / 2**30:.2f} GiB), generated in {time.perf_counter() - start:.0f} s"
        )
        with (
            LocalCluster(memory_limit=limit, **cluster_kw) as cluster,
            Client(cluster),
            TreeMemory(os.getpid()) as mem,
        ):
            streamed, res_streamed = fit(scan, args.k, args.iters, persist=False)
            scaling = {}
            rows = args.scan[0]
            for factor in (1, 2, 4, 8):
                part = scan.isel(scan_y=slice(0, rows * factor // 8))
                scaling[factor], _ = fit(part, args.k, args.iters, persist=False)
        with LocalCluster(memory_limit="auto", **cluster_kw) as cluster, Client(cluster):
            held, res_held = fit(scan, args.k, args.iters, persist=True)
        print(
            f"streamed, s/iteration                  {streamed:.2f} ({streamed / gib:.2f} per GiB)"
        )
        print(f"held in memory, s/iteration            {held:.2f} ({held / gib:.2f} per GiB)")
        print(f"  ratio streamed / held                {streamed / held:.2f}")
        worker_peak = mem.peak_child / 2**20
        print(f"peak RSS of a worker (limit {limit / 2**20:.0f} MiB)  {worker_peak:.0f} MiB")
        print(f"peak RSS of the driver                 {mem.peak_root / 2**20:.0f} MiB")
        for var in ("maps", "diffractions", "loss"):
            a, b = res_streamed[var].values, res_held[var].values
            err = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))
            print(f"streamed vs held: max |diff| / max, {var:<12} {err:.1e}")
        base = scaling[1]
        for factor, seconds in scaling.items():
            print(
                f"size {factor}x: s/iteration {seconds:.2f}, over {factor} x the 1x time "
                f"{seconds / (factor * base):.2f}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
