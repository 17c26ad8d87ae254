"""Benchmark the NMF engine against the bare GEMMs and scikit-learn, in memory and streamed.

Reports, from one run (ratios, because the machines are noisy):

- seconds per HALS iteration in memory, over the bare GEMM time ``D S`` plus ``D^T C``
  (numpy, float32, same data, same threads);
- over scikit-learn's ``NMF(solver="mu")`` per iteration;
- iterations and seconds to reach a relative loss, against scikit-learn's ``cd`` and ``mu``;
- seconds per iteration streamed from lz4-compressed zarr on worker processes whose memory
  limit is below the data size, over in memory, and the peak memory of the process tree.

    python -m benchmarks.nmf --scan 128x128 --detector 64x64 -k 16
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
    os.environ.setdefault(_var, "1")  # one BLAS thread per task, everywhere, for fairness

import dask  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._memory import TreeMemory  # noqa: E402
from dask_stemnmf import ConstrainedNMF, open_4dstem, simulate_scan  # noqa: E402
from dask_stemnmf.errors import ConvergenceWarning  # noqa: E402


def _pair(text: str) -> tuple[int, int]:
    a, b = (int(v) for v in text.split("x"))
    return a, b


def _fit(ds, k, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model = ConstrainedNMF(k, diffraction_continuity=False, bright_field_mask=None, **kw).fit(
            ds
        )
        return model.result_, time.perf_counter() - start


def _per_iteration(ds, k, iters, **kw):
    """Median seconds between iterations (timestamps from the callback; setup excluded)."""
    stamps: list[float] = []
    result, _ = _fit(
        ds,
        k,
        max_iter=iters + 2,
        tol=0,
        callback=lambda i, loss: stamps.append(time.perf_counter()),
        **kw,
    )
    return float(np.median(np.diff(stamps[1:]))), result


def _sklearn_time_to(D, k, solver, target, d2, max_iter=640):
    """Iterations (doubling) and seconds, initialisation included, to reach ``target``."""
    from sklearn.decomposition import NMF

    n = 5
    while n <= max_iter:
        model = NMF(k, init="nndsvda", solver=solver, max_iter=n, tol=0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            W = model.fit_transform(D)
            seconds = time.perf_counter() - start
        loss = float(np.sum((D - W @ model.components_) ** 2)) / d2
        if loss <= target:
            return n, seconds
        n *= 2
    return None, float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=_pair, default=(128, 128))
    parser.add_argument("--detector", type=_pair, default=(64, 64))
    parser.add_argument("-k", type=int, default=16)
    parser.add_argument("--chunks", type=_pair, default=(32, 128))
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--worker-memory", default=None, help="per worker, default data/4")
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()

    k = args.k
    ds = simulate_scan(scan=args.scan, detector=args.detector, precipitates=k, chunks=args.chunks)
    ds = ds.persist(scheduler="threads")
    D = ds["intensity"].values.astype(np.float32).reshape(args.scan[0] * args.scan[1], -1)
    n, m = D.shape
    d2 = float(np.sum(D.astype(np.float64) ** 2))
    print(f"data: {n} positions x {m} pixels, K={k}, float32 {D.nbytes / 2**20:.0f} MiB")

    # bare GEMMs, best of 3
    rng = np.random.default_rng(0)
    S = rng.random((m, k), dtype=np.float32)
    C = rng.random((n, k), dtype=np.float32)
    gemm = min(_timed(lambda: (D @ S, D.T @ C)) for _ in range(3))
    args.gemm = gemm

    with dask.config.set(scheduler="synchronous"):
        ours, _ = _per_iteration(ds, k, args.iters, init="random")
    rows = [
        ("bare GEMMs D S + D^T C (1 core), s", f"{gemm:.3f}"),
        ("HALS iteration in memory (1 core), s", f"{ours:.3f}"),
        ("  ratio over the bare GEMMs", f"{ours / gemm:.2f}"),
    ]

    if not args.skip_sklearn:
        from sklearn.decomposition import NMF

        W0 = (rng.random((n, k)) * np.sqrt(D.mean() / k)).astype(np.float32)
        H0 = (rng.random((k, m)) * np.sqrt(D.mean() / k)).astype(np.float32)

        def sklearn_mu(iters: int) -> float:
            model = NMF(k, init="custom", solver="mu", max_iter=iters, tol=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                model.fit_transform(D, W=W0.copy(), H=H0.copy())
                return time.perf_counter() - start

        sklearn_mu(2)  # warm up
        short, long = 2, 2 + 4 * args.iters
        times = [min(sklearn_mu(short) for _ in range(2)), min(sklearn_mu(long) for _ in range(2))]
        sk_mu = (times[1] - times[0]) / (long - short)
        rows += [
            ("scikit-learn mu per iteration", f"{sk_mu:.3f}"),
            ("  ratio ours / scikit-learn", f"{ours / sk_mu:.2f}"),
        ]

        with dask.config.set(scheduler="synchronous"):
            converged, _ = _fit(ds, k, init="nndsvda", max_iter=500, tol=1e-5)
        target = 1.001 * float(converged["loss"].values[-1])
        losses = converged["loss"].values
        it_ours = int(np.argmax(losses <= target)) + 1
        with dask.config.set(scheduler="synchronous"):
            _, t_ours = _fit(ds, k, init="nndsvda", max_iter=it_ours, tol=0)
        rows.append(
            (f"time to loss {target:.5f} (ours HALS)", f"{t_ours:.2f} s, {it_ours} iterations")
        )
        for solver in ("cd", "mu"):
            iters, secs = _sklearn_time_to(D, k, solver, target, d2)
            shown = (
                "not reached in 640 iterations"
                if iters is None
                else f"{secs:.2f} s, <= {iters} iterations"
            )
            rows.append((f"  scikit-learn {solver}", shown))
            if iters is not None:
                rows.append(("    ratio theirs / ours", f"{secs / t_ours:.1f}"))

    rows += _streamed(ds, k, args, ours)
    for name, value in rows:
        print(f"{name:<44} {value}")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _streamed(ds, k, args, in_memory_per_iter):
    """Per-iteration time on 2 worker processes: data held in ample memory, then streamed
    from lz4 zarr by workers whose memory limit is below the data size."""
    from distributed import Client, LocalCluster

    from dask_stemnmf import save_4dstem

    tmp = Path(tempfile.mkdtemp(prefix="bench-nmf-"))
    try:
        store = tmp / "scan.zarr"
        with dask.config.set(scheduler="threads"):
            save_4dstem(ds, store)
        scan = open_4dstem(store, chunks=None)
        data_bytes = scan["intensity"].nbytes
        # a worker holds about 0.2 GiB of Python, dask and numba before any data; below
        # 0.6 GiB it pauses and the run stalls, so small data cannot exceed the limit
        limit = args.worker_memory or f"{max(data_bytes // 4, 600 * 2**20)}B"
        cluster_kw = {"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
        with LocalCluster(memory_limit="auto", **cluster_kw) as cluster, Client(cluster):
            held, _ = _per_iteration(scan, k, args.iters, init="random", persist=True)
        with (
            LocalCluster(memory_limit=limit, **cluster_kw) as cluster,
            Client(cluster),
            TreeMemory(os.getpid()) as mem,
        ):
            streamed, _ = _per_iteration(scan, k, args.iters, init="random", persist=False)
        return [
            ("held in memory (2 workers), s/iteration", f"{held:.3f}"),
            ("  ratio over the bare GEMMs", f"{held / args.gemm:.2f}"),
            ("streamed from lz4 zarr (2 workers), s/iteration", f"{streamed:.3f}"),
            ("  ratio streamed / held", f"{streamed / held:.2f}"),
            ("  ratio streamed / bare GEMMs", f"{streamed / args.gemm:.2f}"),
            (
                "stored data (uint16) / memory of each worker",
                f"{data_bytes / 2**20:.0f} MiB / {limit}",
            ),
            ("peak RSS of one worker process, streamed", f"{mem.peak_child / 2**20:.0f} MiB"),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
