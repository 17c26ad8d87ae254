from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

from dask_stemnmf import simulate_scan

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("STEMNMF_REAL_DATA", REPO.parent / "shared" / "data" / "real"))

has_rsciio = importlib.util.find_spec("rsciio") is not None
has_h5py = importlib.util.find_spec("h5py") is not None
requires_rsciio = pytest.mark.skipif(
    not has_rsciio, reason="optional reader rosettasciio missing: pip install 'dask_stemnmf[io]'"
)
requires_h5py = pytest.mark.skipif(not has_h5py, reason="h5py missing: pip install h5py")
requires_real_data = pytest.mark.skipif(
    not REAL_DATA.is_dir(), reason=f"real detector files not found at {REAL_DATA}"
)


@pytest.fixture(autouse=True)
def _synchronous() -> Iterator[None]:
    """Tests run on the synchronous scheduler unless they start a cluster themselves."""
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="session")
def small_scan_lazy():
    """A small lazy simulated scan (not written)."""
    return simulate_scan(scan=(24, 20), detector=(32, 32), precipitates=5, phases=2, chunks=(8, 8))


@pytest.fixture(scope="session")
def small_store(tmp_path_factory) -> Path:
    """A small simulated scan on disk; tests must not modify it."""
    path = tmp_path_factory.mktemp("stores") / "small.zarr"
    with dask.config.set(scheduler="synchronous"):
        simulate_scan(
            path, scan=(24, 20), detector=(32, 32), precipitates=5, phases=2, chunks=(8, 8)
        )
    return path


def tree_checksum(path: Path) -> str:
    """Hash of every file's relative path and bytes below ``path`` (or of a file)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


class _RaiseOnCompute:
    """A dask scheduler that fails the test if anything computes."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, dsk, keys, **kwargs):
        self.calls += 1
        raise AssertionError("a computation ran while the graph was built")


@pytest.fixture
def raise_if_dask_computes() -> _RaiseOnCompute:
    """A scheduler to set around graph building: ``with dask.config.set(scheduler=it)``."""
    return _RaiseOnCompute()


def write_split_store(path: Path) -> xr.Dataset:
    """Write a (4, 4, 6, 6) uint16 scan whose zarr chunks split the patterns; return it."""
    dims = ("scan_y", "scan_x", "k_y", "k_x")
    shape = (4, 4, 6, 6)
    ds = xr.Dataset(
        {"intensity": (dims, np.arange(np.prod(shape), dtype="uint16").reshape(shape))},
        coords={
            d: (d, np.arange(n, dtype=float), {"units": "px"})
            for d, n in zip(dims, shape, strict=True)
        },
        attrs={"beam_energy_kev": 200.0, "convergence_semiangle_mrad": 1.0, "scan_step_nm": 1.0},
    )
    encoding = {"intensity": {"chunks": (2, 2, 3, 3)}}
    ds.to_zarr(path, zarr_format=3, encoding=encoding, consolidated=False)
    return ds
