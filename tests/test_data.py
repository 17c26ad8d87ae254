from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from dask_stemnmf import InputError, OutputExistsError, StemNMFWarning, open_4dstem, save_4dstem
from dask_stemnmf.data import plan_scan_chunks
from dask_stemnmf.schema import SCHEMA_VERSION

from .conftest import tree_checksum


def make_scan(dtype, shape=(6, 5, 7, 9), spectrum=False, seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    if spectrum:
        shape = shape[:2] + (11,)
    if np.dtype(dtype).kind == "f":
        values = rng.normal(10, 3, shape).astype(dtype)
    else:
        values = rng.integers(0, min(np.iinfo(dtype).max, 4000), shape).astype(dtype)
    dims = ("scan_y", "scan_x", "energy") if spectrum else ("scan_y", "scan_x", "k_y", "k_x")
    coords = {
        "scan_y": ("scan_y", 0.5 * np.arange(shape[0]), {"units": "nm"}),
        "scan_x": ("scan_x", 0.5 * np.arange(shape[1]), {"units": "nm"}),
    }
    if spectrum:
        coords["energy"] = ("energy", 100 + 0.25 * np.arange(shape[2]), {"units": "eV"})
    else:
        coords["k_y"] = ("k_y", 0.1 * (np.arange(shape[2]) - 3), {"units": "1/nm"})
        coords["k_x"] = ("k_x", 0.1 * (np.arange(shape[3]) - 4), {"units": "1/nm"})
    attrs = {
        "beam_energy_kev": 300.0,
        "convergence_semiangle_mrad": 0.8,
        "scan_step_nm": 0.5,
        "probe_fwhm_nm": 1.6,
        "source": "test",
        "nested": {"a": [1, 2], "b": "x"},
    }
    return xr.Dataset({"intensity": (dims, values)}, coords=coords, attrs=attrs)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "int16", "float32", "float64"])
@pytest.mark.parametrize("chunks", [(2, 5), (4, 3), (6, 5)])
def test_round_trip_keeps_values_dtype_coords_attrs(tmp_path, dtype, chunks):
    ds = make_scan(dtype)
    path = save_4dstem(ds, tmp_path / "s.zarr", chunks=chunks)
    back = open_4dstem(path, chunks=None)
    assert back["intensity"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back["intensity"].values, ds["intensity"].values)
    for dim in ds["intensity"].dims:
        np.testing.assert_array_equal(back[dim].values, ds[dim].values)
        assert back[dim].attrs["units"] == ds[dim].attrs["units"]
    for key, value in ds.attrs.items():
        assert back.attrs[key] == value
    assert back.attrs["schema_version"] == SCHEMA_VERSION
    # stored on disk in the original dtype and chunks, whole patterns per chunk
    arr = zarr.open_array(path / "intensity", mode="r")
    assert arr.dtype == np.dtype(dtype)
    assert arr.chunks == chunks + (7, 9)
    assert back["intensity"].data.chunks[2:] == ((7,), (9,))


def test_spectrum_image_opens_through_the_same_path(tmp_path):
    ds = make_scan("float32", spectrum=True)
    back = open_4dstem(save_4dstem(ds, tmp_path / "si.zarr", chunks=(3, 5)))
    assert back["intensity"].dims == ("scan_y", "scan_x", "energy")
    assert back["energy"].attrs["units"] == "eV"
    np.testing.assert_array_equal(back["intensity"].values, ds["intensity"].values)


def test_open_is_lazy_and_read_only(tmp_path, raise_if_dask_computes):
    ds = make_scan("uint16")
    path = tmp_path / "s.zarr"
    import dask

    with dask.config.set(scheduler="synchronous"):
        save_4dstem(ds, path, chunks=(2, 5))
    with dask.config.set(scheduler=raise_if_dask_computes):
        back = open_4dstem(path, chunks=(4, 5))
    assert isinstance(back["intensity"].data, da.Array)
    assert raise_if_dask_computes.calls == 0
    before = tree_checksum(path)
    with dask.config.set(scheduler="synchronous"):
        assert back["intensity"].sum().compute() > 0  # read everything
    assert tree_checksum(path) == before


def test_chunks_that_split_patterns_are_fixed_with_a_note(tmp_path):
    ds = make_scan("uint16")
    path = tmp_path / "split.zarr"
    ds.to_zarr(
        path, zarr_format=3, encoding={"intensity": {"chunks": (2, 2, 3, 4)}}, consolidated=False
    )
    with pytest.warns(StemNMFWarning, match="split the patterns"):
        back = open_4dstem(path, chunks=None)
    assert back["intensity"].data.chunks[2:] == ((7,), (9,))
    assert back["intensity"].data.chunks[:2] == ((2, 2, 2), (2, 2, 1))
    np.testing.assert_array_equal(back["intensity"].values, ds["intensity"].values)


def test_zarr_format_2_is_read(tmp_path):
    ds = make_scan("uint16")
    path = tmp_path / "v2.zarr"
    ds.to_zarr(path, zarr_format=2, encoding={"intensity": {"chunks": (3, 5, 7, 9)}})
    back = open_4dstem(path, chunks=None)
    np.testing.assert_array_equal(back["intensity"].values, ds["intensity"].values)
    assert back["intensity"].dtype == np.uint16


def test_auto_chunks_aim_at_the_target_and_align_to_storage():
    # 16 KiB per position as float32: 128 MiB target = 8192 positions
    bpp = 4 * 64 * 64
    assert plan_scan_chunks((256, 256), bpp, (16, 16)) == (32, 256)
    cy, cx = plan_scan_chunks((1024, 1024), bpp, (4, 8))
    assert cx % 8 == 0 and cy % 4 == 0
    assert 64 * 2**20 <= cy * cx * bpp <= 256 * 2**20
    # a huge stored chunk is split (rows first)
    cy, cx = plan_scan_chunks((4096, 256), bpp, (4096, 256))
    assert cx == 256 and cy * cx * bpp <= 256 * 2**20
    # a chunk within a factor two of the target is kept
    assert plan_scan_chunks((512, 512), bpp, (64, 128)) == (64, 128)
    # tiny data: one chunk
    assert plan_scan_chunks((6, 5), bpp, (2, 5)) == (6, 5)


def test_save_refuses_existing_output_and_leaves_it(tmp_path):
    ds = make_scan("uint16")
    path = save_4dstem(ds, tmp_path / "s.zarr")
    before = sorted(p.name for p in path.rglob("*"))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        save_4dstem(make_scan("uint16", seed=1), path)
    assert sorted(p.name for p in path.rglob("*")) == before
    save_4dstem(make_scan("uint16", seed=1), path, overwrite=True)
    np.testing.assert_array_equal(
        open_4dstem(path)["intensity"].values, make_scan("uint16", seed=1)["intensity"].values
    )
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    ds = make_scan("float32")

    def boom(block):
        raise RuntimeError("disk on fire")

    bad = (
        ds["intensity"].data
        if isinstance(ds["intensity"].data, da.Array)
        else da.from_array(ds["intensity"].values, chunks=(2, 5, 7, 9))
    )
    ds = ds.assign(intensity=(ds["intensity"].dims, bad.map_blocks(boom, dtype=bad.dtype)))
    with pytest.raises(RuntimeError, match="disk on fire"):
        save_4dstem(ds, tmp_path / "s.zarr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ds: ds.rename({"intensity": "data"}), "no variable 'intensity'"),
        (lambda ds: ds.transpose("k_y", "k_x", "scan_y", "scan_x"), "expected"),
        (lambda ds: ds.assign(intensity=ds["intensity"] > 5), "not a real number"),
        (lambda ds: ds.assign(intensity=ds["intensity"].astype(complex)), "not a real number"),
        (lambda ds: ds.drop_attrs(deep=False), "beam_energy_kev"),
        (lambda ds: ds.assign_attrs(scan_step_nm=-1.0), "positive"),
        (lambda ds: ds.assign_attrs(schema_version=SCHEMA_VERSION + 1), "newer"),
        (lambda ds: ds.assign(intensity=ds["intensity"].isel(k_y=0)), "expected"),
    ],
)
def test_bad_datasets_are_refused_with_the_fix(tmp_path, mutate, message):
    with pytest.raises(InputError, match=message):
        save_4dstem(mutate(make_scan("float32")), tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_open_refuses_missing_and_non_zarr_paths(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_4dstem(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not a zarr store"):
        open_4dstem(tmp_path / "plain")
    np.save(tmp_path / "a.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(InputError, match="stemnmf convert"):
        open_4dstem(tmp_path / "a.npy")


def test_nan_attributes_mean_unknown_and_round_trip(tmp_path):
    ds = make_scan("float32").assign_attrs(beam_energy_kev=float("nan"))
    back = open_4dstem(save_4dstem(ds, tmp_path / "s.zarr"))
    assert np.isnan(back.attrs["beam_energy_kev"])


def test_detector_mask_round_trips_and_is_checked(tmp_path):
    ds = make_scan("uint16")
    mask = np.ones((7, 9), bool)
    mask[3, 4] = False
    back = open_4dstem(
        save_4dstem(ds.assign(detector_mask=(("k_y", "k_x"), mask)), tmp_path / "m.zarr")
    )
    np.testing.assert_array_equal(back["detector_mask"].values, mask)
    with pytest.raises(InputError, match="detector_mask"):
        save_4dstem(
            ds.assign(detector_mask=(("k_y", "k_x"), mask.astype(int))), tmp_path / "bad.zarr"
        )
