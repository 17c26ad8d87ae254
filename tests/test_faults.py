"""Faults: a worker process killed mid-run, and the default cluster's network exposure."""

from __future__ import annotations

import os
import signal
import threading
import time

import dask
import numpy as np
import pytest

from dask_stemnmf import ConstrainedNMF, open_4dstem, rotational_similarity, simulate_scan
from dask_stemnmf.cluster import scheduler

pytestmark = pytest.mark.filterwarnings("ignore::dask_stemnmf.errors.ConvergenceWarning")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "scan.zarr"
    with dask.config.set(scheduler="threads"):
        simulate_scan(path, scan=(32, 32), detector=(32, 32), precipitates=4, seed=6,
                      chunks=(8, 32))  # fmt: skip
    return path


def kill_one_worker(client, delay):
    """SIGKILL one worker process after ``delay`` seconds, from another thread."""
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]

    def kill():
        time.sleep(delay)
        os.kill(victim, signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread, victim


def test_a_decomposition_survives_a_killed_worker(stored):
    from distributed import get_client

    kw = {"max_iter": 30, "tol": 0, "map_resolution_nm": "probe", "init": "random"}
    with scheduler("local", n_workers=2, progress=False):
        ds = open_4dstem(stored)
        calm = ConstrainedNMF(5, **kw).fit(ds).result_.compute()
        client = get_client()
        started: dict[str, object] = {}

        def on_iteration(it, loss):
            if it == 3 and not started:
                started["kill"] = kill_one_worker(client, 0.05)

        hit = ConstrainedNMF(5, callback=on_iteration, **kw).fit(open_4dstem(stored)).result_
        hit = hit.compute()
        thread, victim = started["kill"]
        thread.join()
        assert victim not in client.run(os.getpid).values()  # the worker really died
    np.testing.assert_allclose(hit["loss"].values, calm["loss"].values, rtol=1e-6)
    np.testing.assert_allclose(hit["maps"].values, calm["maps"].values, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(hit["diffractions"].values, calm["diffractions"].values,
                               rtol=1e-4, atol=1e-7)  # fmt: skip


def test_the_tiled_similarity_survives_a_killed_worker(stored):
    from distributed import get_client

    ds = open_4dstem(stored)
    stack = ds["intensity"].data.reshape(-1, 32, 32).astype(np.float64)
    kw = {"centre": tuple(ds.attrs["beam_centre_px"]), "n_angles": 180, "block": 64}
    with scheduler("local", n_workers=2, progress=False):
        client = get_client()
        calm = rotational_similarity(stack, **kw)[0]
        rho, _ = rotational_similarity(stack, lazy=True, **kw)
        thread, victim = kill_one_worker(client, 0.3)
        hit = rho.compute()
        thread.join()
        assert victim not in client.run(os.getpid).values()
    np.testing.assert_allclose(hit, calm, atol=1e-12)


def test_the_default_local_cluster_listens_on_loopback_only():
    from distributed import get_client

    with scheduler("local", n_workers=1, progress=False):
        client = get_client()
        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        assert client.dashboard_link.startswith("http://127.0.0.1:")
