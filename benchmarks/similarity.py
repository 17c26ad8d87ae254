"""Benchmark the tiled rotational similarity against its GEMM flop bound and a brute force.

For P patterns (a subsample of a simulated scan's positions) reports, from one run:

- seconds for the whole ``P x P`` similarity (tiles of ``B x B`` on the threaded scheduler);
- the flop bound: the complex GEMMs the tiles do (``8 R F B^2`` flops per tile over the upper
  triangle) at the rate this machine's numpy reaches on one such GEMM, per core;
- the brute-force shift loop (every one of the ``T`` shifts tried for every pair), timed on
  a few pairs and scaled to all of them.

    python -m benchmarks.similarity --patterns 2048,8192
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dask  # noqa: E402
import numpy as np  # noqa: E402

from dask_stemnmf import rotational_similarity, simulate_scan  # noqa: E402
from dask_stemnmf._kernels.polar import normalise_polar  # noqa: E402
from dask_stemnmf.similarity import polar_patterns  # noqa: E402


def gemm_rate(r: int, f: int, b: int, step: int = 32) -> float:
    """Flops per second of one core on the tiles' complex GEMM ``(F, step, R) @ (F, R, B)``."""
    rng = np.random.default_rng(0)
    a = rng.random((f, step, r)) + 1j * rng.random((f, step, r))
    c = rng.random((f, r, b)) + 1j * rng.random((f, r, b))
    best = np.inf
    for _ in range(5):
        start = time.perf_counter()
        np.matmul(a, c)
        best = min(best, time.perf_counter() - start)
    return 8.0 * f * step * r * b / best


def brute_per_pair(polar: np.ndarray, pairs: int = 40) -> float:
    """Seconds per pair of the shift loop: every azimuthal shift tried, as in the tests."""
    p = normalise_polar(polar[: 2 * pairs])
    t = p.shape[2]
    start = time.perf_counter()
    for i in range(pairs):
        a, b = p[2 * i], p[2 * i + 1]
        max(float(np.sum(a * np.roll(b, -tau, axis=1))) for tau in range(t))
    return (time.perf_counter() - start) / pairs


def main(argv: list[str] | None = None) -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patterns", default="2048,8192")
    parser.add_argument("--detector", type=int, default=64)
    parser.add_argument("--angles", type=int, default=360)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.patterns.split(",")]
    n = max(sizes)
    side = int(np.ceil(np.sqrt(n)))
    ds = simulate_scan(
        scan=(side, side), detector=(args.detector, args.detector), precipitates=12, phases=3,
        seed=1, chunks=(16, side),
    )  # fmt: skip
    stack_all = ds["intensity"].data.reshape(side * side, args.detector, args.detector)
    with dask.config.set(scheduler="threads", num_workers=args.workers):
        stack_all = stack_all[:n].astype(np.float64).persist()
    centre = tuple(ds.attrs["beam_centre_px"])
    kw = {"centre": centre, "n_angles": args.angles, "central_mask_px": 4.0}
    polar, grid = polar_patterns(stack_all[:128].compute(), **kw)
    r, t = grid["radii_px"].size, args.angles
    f = t // 2 + 1
    rate = gemm_rate(r, f, args.block)
    per_pair = brute_per_pair(polar)
    print(f"polar grid: {r} radii x {t} angles; tiles {args.block}; {args.workers} threads")
    print(f"complex GEMM rate, one core          {rate / 1e9:.2f} GFlop/s")
    for p in sizes:
        stack = stack_all[:p]
        nb = -(-p // args.block)
        upper = sum(
            min(args.block, p - i * args.block) * min(args.block, p - j * args.block)
            for i in range(nb)
            for j in range(i, nb)
        )  # fmt: skip
        bound = 8.0 * r * f * upper / (rate * args.workers)
        with dask.config.set(scheduler="threads", num_workers=args.workers):
            start = time.perf_counter()
            rho, _ = rotational_similarity(stack, block=args.block, lazy=True, **kw)
            rho.compute()
            seconds = time.perf_counter() - start
        brute = per_pair * p * (p + 1) / 2 / args.workers
        print(f"P = {p}")
        print(f"  tiled similarity, s                {seconds:.2f}")
        print(f"  GEMM flop bound, s                 {bound:.2f}")
        print(f"    ratio ours / bound               {seconds / bound:.2f}")
        print(f"  brute-force shift loop (scaled), s {brute:.0f}")
        print(f"    ratio brute force / ours         {brute / seconds:.0f}")
        # per step of 32 rows: the complex products and their contiguous copy, the correlation
        step = 32 * args.block
        memory = 2 * f * step * 16 + step * t * 8 + 2 * args.block**2 * 8
        print(f"  working memory per tile task, MiB  {memory / 2**20:.1f}")


if __name__ == "__main__":
    main()
