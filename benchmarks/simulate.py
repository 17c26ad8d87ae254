"""Benchmark: generate a synthetic scan to zarr with bounded memory.

Runs ``stemnmf simulate`` in a subprocess (embedded local cluster) and samples the memory of
the whole process tree. Reports, from one run: throughput, peak memory of the tree and of
the largest single process, and those peaks over the scan size and over the chunk size.

    python -m benchmarks.simulate --scan 512x512 --detector 128x128 --out /tmp/big.zarr
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._memory import TreeMemory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", default="256x256")
    parser.add_argument("--detector", default="128x128")
    parser.add_argument("--chunks", default="32x32")
    parser.add_argument("--out", type=Path, default=Path("bench-simulate.zarr"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GiB", help="per worker")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    args = parser.parse_args()

    ny, nx = (int(v) for v in args.scan.split("x"))
    qy, qx = (int(v) for v in args.detector.split("x"))
    cy, cx = (int(v) for v in args.chunks.split("x"))
    scan_bytes = ny * nx * qy * qx * 2  # uint16 counts
    chunk_bytes = cy * cx * qy * qx * 2
    exe = Path(sys.executable).with_name("stemnmf")
    cmd = [
        str(exe), "simulate", str(args.out), "--scan", args.scan, "--detector", args.detector,
        "--chunks", args.chunks, "--overwrite", "--workers", str(args.workers),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(proc.pid) as mem:
        output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"simulate failed:\n{output}")
    on_disk = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    gib = 2**30
    rows = [
        ("scan", f"{args.scan} x {args.detector} uint16 = {scan_bytes / gib:.2f} GiB"),
        ("chunk", f"{args.chunks} positions = {chunk_bytes / 2**20:.1f} MiB"),
        ("time", f"{seconds:.1f} s ({scan_bytes / gib / seconds:.3f} GiB/s generated)"),
        ("on disk", f"{on_disk / gib:.2f} GiB (compression {scan_bytes / on_disk:.1f}x)"),
        ("peak RSS, process tree", f"{mem.peak_total / gib:.2f} GiB"),
        ("  over scan size", f"{mem.peak_total / scan_bytes:.3f}"),
        ("peak RSS, one process", f"{mem.peak_single / gib:.2f} GiB"),
        ("  over chunk size", f"{mem.peak_single / chunk_bytes:.1f}"),
    ]
    for name, value in rows:
        print(f"{name:<24} {value}")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
