"""Slow cases: generation of a larger-than-worker-memory scan. Run with `pytest -m slow`."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dask_stemnmf import open_4dstem, simulate_scan

pytestmark = pytest.mark.slow


def test_scan_larger_than_worker_memory_is_generated_within_the_limit(tmp_path):
    psutil = pytest.importorskip("psutil")
    from distributed import Client, LocalCluster

    from benchmarks._memory import TreeMemory

    kw = {"scan": (192, 192), "detector": (128, 128), "precipitates": 20, "chunks": (16, 32)}
    scan_bytes = 192 * 192 * 128 * 128 * 2  # 1.1 GiB of uint16
    limit = 512 * 2**20
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit=limit, dashboard_address=None
        ) as cluster,
        Client(cluster),
        TreeMemory(os.getpid()) as mem,
    ):
        simulate_scan(tmp_path / "big.zarr", **kw)
        workers = [p for p in psutil.Process().children(recursive=True)]
        assert len(workers) >= 2
    assert scan_bytes > 2 * limit
    # the largest process (driver or worker) stays well under the scan size and the limit
    assert mem.peak_single < limit, f"{mem.peak_single / 2**20:.0f} MiB"
    ds = open_4dstem(tmp_path / "big.zarr", chunks=None)
    assert ds["intensity"].shape == (192, 192, 128, 128)
    # spot-check two chunks against the lazy in-memory simulation of the same seed
    ref = simulate_scan(**kw)["intensity"]
    for ys, xs in ((slice(0, 16), slice(0, 32)), (slice(176, 192), slice(160, 192))):
        np.testing.assert_array_equal(ds["intensity"][ys, xs].values, ref[ys, xs].values)
