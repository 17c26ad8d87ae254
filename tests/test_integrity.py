"""Silent corruption: missing chunk files and damaged chunks are found and named."""

from __future__ import annotations

import shutil

import dask
import numpy as np
import pytest

from dask_stemnmf import InputError, decompose, open_4dstem, simulate_scan
from dask_stemnmf.cli import main
from dask_stemnmf.errors import StemNMFWarning

from .conftest import tree_checksum


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "scan.zarr"
    with dask.config.set(scheduler="synchronous"):
        simulate_scan(path, scan=(16, 16), detector=(16, 16), precipitates=2, seed=1,
                      chunks=(8, 8))  # fmt: skip
    return path


def chunk_file(store, i, j):
    return store / "intensity" / "c" / str(i) / str(j) / "0" / "0"


def test_a_missing_chunk_is_refused_by_name_or_masked_on_request(store, capsys):
    chunk_file(store, 1, 0).unlink()
    with pytest.raises(InputError, match=r"1 of 4 chunk files .* missing .* chunk \(1, 0, 0, 0\)"):
        open_4dstem(store)
    code = main(["run", str(store), "-o", str(store.parent / "r.zarr"), "--scheduler",
                 "synchronous"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "missing" in err and err.count("\n") == 1
    out = store.parent / "masked.zarr"
    code = main(["run", str(store), "-o", str(out), "-k", "3", "--max-iter", "10",
                 "--missing-chunks", "mask", "--scheduler", "synchronous"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0 and "note: " in captured.err and out.exists(), captured.err
    with pytest.warns(StemNMFWarning, match="64 positions read as zeros"):
        ds = open_4dstem(store, missing_chunks="mask")
    assert (~ds["scan_mask"].values).sum() == 64 and not ds["scan_mask"].values[8:, :8].any()
    assert ds["intensity"].values[8:, :8].max() == 0
    with dask.config.set(scheduler="synchronous"):
        result = decompose(ds, 3, max_iter=20, diffraction_continuity=False, map_resolution_nm=None)
    assert np.isfinite(result["maps"].values).all()
    assert result["maps"].values[:, 8:, :8].max() < 1e-3 * result["maps"].values.max()


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_a_damaged_chunk_raises_an_error_naming_it(store, damage):
    target = chunk_file(store, 0, 1)
    data = target.read_bytes()
    before = tree_checksum(store)
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 3])
    else:
        target.write_bytes(bytes(b ^ 0x5A for b in data))
    ds = open_4dstem(store)  # opening reads no data
    with pytest.raises(InputError, match=r"chunk intensity/c/0/1/0/0 of .* truncated or corrupt"):
        with dask.config.set(scheduler="synchronous"):
            ds["intensity"].values  # noqa: B018
    assert tree_checksum(store) != before  # (the damage is ours, the reader wrote nothing)


def test_a_store_replaced_at_the_same_path_is_read_afresh(store):
    first = open_4dstem(store)["intensity"].values.copy()
    shutil.rmtree(store)
    with dask.config.set(scheduler="synchronous"):
        simulate_scan(store, scan=(16, 16), detector=(16, 16), precipitates=2, seed=2,
                      chunks=(8, 8))  # fmt: skip
    second = open_4dstem(store)["intensity"].values
    assert not np.array_equal(first, second)
