from __future__ import annotations

import tracemalloc

import dask
import numpy as np
import pytest

from dask_stemnmf import InputError, OutputExistsError, StemNMFWarning, open_4dstem
from dask_stemnmf.convert import Calibration, convert
from dask_stemnmf.readers import read_raw

from .conftest import (
    REAL_DATA,
    requires_h5py,
    requires_real_data,
    requires_rsciio,
    tree_checksum,
    write_split_store,
)


def npy_scan(tmp_path, shape=(6, 5, 8, 9), dtype="uint16", name="scan.npy"):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, shape).astype(dtype)
    path = tmp_path / name
    np.save(path, data)
    return path, data


def converted(src, tmp_path, **kw):
    with pytest.warns(StemNMFWarning) if kw.pop("expect_notes", True) else _nothing():
        result = convert(src, tmp_path / "out.zarr", **kw)
    return result, open_4dstem(result.output, chunks=None)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_npy_round_trip_with_calibration(tmp_path):
    src, data = npy_scan(tmp_path)
    before = tree_checksum(src)
    cal = Calibration(
        scan_step_nm=0.25,
        k_step=0.05,
        k_units="1/nm",
        beam_energy_kev=300,
        convergence_semiangle_mrad=1.0,
    )
    result, ds = converted(src, tmp_path, calibration=cal, chunks=(2, 5), expect_notes=False)
    assert result.notes == []
    np.testing.assert_array_equal(ds["intensity"].values, data)
    assert ds["intensity"].dtype == np.uint16
    assert ds["intensity"].data.chunks[0] == (2, 2, 2)
    assert float(ds["scan_x"][1] - ds["scan_x"][0]) == pytest.approx(0.25)
    assert float(ds["k_y"][1] - ds["k_y"][0]) == pytest.approx(0.05)
    assert float(ds["k_y"][4]) == pytest.approx(0.0)  # k = 0 at the detector's centre pixel
    assert ds.attrs["beam_energy_kev"] == 300
    assert ds.attrs["value_summary"]["checked"] is False  # unsigned counts: nothing to check
    assert tree_checksum(src) == before


def test_npy_without_calibration_is_stored_in_pixels_with_notes(tmp_path):
    src, _ = npy_scan(tmp_path)
    result, ds = converted(src, tmp_path)
    assert ds["k_x"].attrs["units"] == "px"
    assert np.isnan(ds.attrs["scan_step_nm"])
    assert any("--scan-step" in n for n in result.notes)
    assert any("--beam-energy" in n for n in result.notes)


def test_spectrum_image_npy(tmp_path):
    src, data = npy_scan(tmp_path, shape=(4, 3, 50), dtype="float32")
    cal = Calibration(
        scan_step_nm=1.0,
        energy_step_ev=0.5,
        energy_offset_ev=280.0,
        beam_energy_kev=200,
        convergence_semiangle_mrad=20,
    )
    _, ds = converted(src, tmp_path, calibration=cal, expect_notes=False)
    assert ds["intensity"].dims == ("scan_y", "scan_x", "energy")
    assert float(ds["energy"][0]) == 280.0 and ds["energy"].attrs["units"] == "eV"
    np.testing.assert_array_equal(ds["intensity"].values, data)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 5)), "2-D array"),
        (np.zeros((2, 2, 2, 2, 2)), "5-D array"),
        (np.zeros((2, 2, 3, 3), bool), "not a real number"),
        (np.zeros((2, 2, 3, 3), complex), "not a real number"),
        (np.zeros((0, 2, 3, 3)), "empty"),
    ],
)
def test_bad_arrays_are_refused_and_nothing_is_written(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(InputError, match=message):
        convert(tmp_path / "bad.npy", tmp_path / "out.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy"]


def test_missing_and_unknown_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        convert(tmp_path / "nope.npy", tmp_path / "out.zarr")
    (tmp_path / "scan.xyz").write_bytes(b"123")
    with pytest.raises(InputError, match="unknown format"):
        convert(tmp_path / "scan.xyz", tmp_path / "out.zarr")


def test_existing_output_is_refused_and_untouched(tmp_path):
    src, _ = npy_scan(tmp_path)
    out = tmp_path / "out.zarr"
    convert(src, out, calibration=Calibration(1, 1, "1/nm", None, 0, 200, 1))
    before = tree_checksum(out)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(src, out)
    assert tree_checksum(out) == before


def test_nan_inf_and_negative_values_are_counted(tmp_path):
    data = np.random.default_rng(1).normal(5, 1, (5, 4, 6, 6)).astype("float32")
    data[0, 0, 0, :3] = np.nan
    data[1, 2, 3, 4] = np.inf
    data[4, 3, 5, 5] = -2.5
    np.save(tmp_path / "bad.npy", data)
    with pytest.warns(StemNMFWarning) as caught:
        result = convert(tmp_path / "bad.npy", tmp_path / "out.zarr")
    messages = [str(w.message) for w in caught]
    assert any("3 NaN and 1 Inf" in m for m in messages)
    assert any("1 negative" in m and "clip" in m for m in messages)
    summary = open_4dstem(result.output).attrs["value_summary"]
    assert (summary["n_nan"], summary["n_inf"], summary["n_negative"]) == (3, 1, 1)
    assert summary["min"] == -2.5
    # values are kept as they are: the analysis decides what to do with them
    back = open_4dstem(result.output)["intensity"].values
    np.testing.assert_array_equal(np.isnan(back), np.isnan(data))


def test_chunks_that_split_patterns_are_fixed(tmp_path):
    ds = write_split_store(tmp_path / "split.zarr")
    before = tree_checksum(tmp_path / "split.zarr")
    with pytest.warns(StemNMFWarning, match="split the patterns"):
        result = convert(tmp_path / "split.zarr", tmp_path / "fixed.zarr")
    fixed = open_4dstem(result.output, chunks=None)
    assert fixed["intensity"].data.chunks[2:] == ((6,), (6,))
    np.testing.assert_array_equal(fixed["intensity"].values, ds["intensity"].values)
    assert tree_checksum(tmp_path / "split.zarr") == before


def test_conversion_streams_with_bounded_memory(tmp_path):
    """A 64 MiB .npy converted in 1 MiB chunks never holds more than a few chunks."""
    shape = (64, 64, 64, 64)
    mm = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype="uint16", shape=shape)
    for i in range(shape[0]):
        mm[i] = i
    mm.flush()
    del mm
    total = 64 * 64 * 64 * 64 * 2
    tracemalloc.start()
    try:
        with pytest.warns(StemNMFWarning):
            convert(tmp_path / "big.npy", tmp_path / "big.zarr", chunks=(8, 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    chunk = 8 * 16 * 64 * 64 * 2
    assert peak < 16 * chunk, f"peak {peak / 2**20:.1f} MiB"
    assert peak < total / 4
    ds = open_4dstem(tmp_path / "big.zarr")
    assert int(ds["intensity"][63, 0, 0, 0]) == 63


@requires_h5py
def test_hdf5_dataset_choice(tmp_path):
    import h5py

    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a/scan"] = np.ones((3, 3, 4, 4), "float32")
        f["b/scan"] = np.full((2, 3, 4, 4), 2, "uint16")
        f["note"] = np.zeros(3)
    with pytest.raises(InputError, match="--dataset"):
        convert(tmp_path / "two.h5", tmp_path / "out.zarr")
    with pytest.raises(InputError, match="no dataset"):
        convert(tmp_path / "two.h5", tmp_path / "out.zarr", dataset="/c")
    with pytest.warns(StemNMFWarning):
        result = convert(tmp_path / "two.h5", tmp_path / "out.zarr", dataset="/b/scan")
    ds = open_4dstem(result.output)
    assert ds["intensity"].shape == (2, 3, 4, 4) and ds["intensity"].dtype == np.uint16


@requires_h5py
def test_npy_and_hdf5_convert_on_worker_processes(tmp_path):
    import h5py
    from distributed import Client, LocalCluster

    src, data = npy_scan(tmp_path, shape=(8, 6, 5, 5))
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("scan", data=data, chunks=(2, 3, 5, 5))
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
        pytest.warns(StemNMFWarning),
    ):
        a = convert(src, tmp_path / "a.zarr", chunks=(3, 6))
        b = convert(tmp_path / "s.h5", tmp_path / "b.zarr", chunks=(3, 6))
    np.testing.assert_array_equal(open_4dstem(a.output)["intensity"].values, data)
    np.testing.assert_array_equal(open_4dstem(b.output)["intensity"].values, data)


# ---- real detector files -------------------------------------------------------------------


@requires_real_data
@requires_h5py
def test_py4dstem_emd_converts_with_its_calibrations(tmp_path):
    import h5py

    src = REAL_DATA / "py4DSTEM_size2x3x4x5.h5"
    before = tree_checksum(src)
    result, ds = converted(src, tmp_path)
    with h5py.File(src, "r") as f:
        expected = f["datacube_root/datacube/data"][()]
    np.testing.assert_array_equal(ds["intensity"].values, expected)
    assert ds["intensity"].dtype == np.float32
    assert ds.attrs["scan_step_nm"] == pytest.approx(0.126796875)
    assert ds["scan_y"].attrs["units"] == "nm"
    # 0.04425 1/Angstrom is 0.4425 1/nm
    assert float(ds["k_x"][1] - ds["k_x"][0]) == pytest.approx(0.44251566616087125)
    assert ds["k_x"].attrs["units"] == "1/nm"
    assert result.values.n_negative == 20  # this file holds background-subtracted values
    assert tree_checksum(src) == before


REAL_FILES = [
    ("test1.blo", (3, 2, 144, 144), "uint8", 12.8, "px"),
    ("topspin_test_B.app5", (3, 7, 31, 26), "float32", 5.0, "mrad"),
    ("001_4x2_6bit.mib", (2, 4, 256, 256), "uint8", None, "px"),
]


@requires_real_data
@requires_rsciio
@pytest.mark.parametrize(("name", "shape", "dtype", "step", "k_units"), REAL_FILES)
def test_real_files_convert_through_rosettasciio(tmp_path, name, shape, dtype, step, k_units):
    import importlib

    from dask_stemnmf.readers import RSCIIO_FORMATS

    src = REAL_DATA / name
    before = tree_checksum(src)
    _, ds = converted(src, tmp_path)
    assert ds["intensity"].shape == shape
    assert ds["intensity"].dtype == np.dtype(dtype)
    assert ds["k_x"].attrs["units"] == k_units
    if step is None:
        assert np.isnan(ds.attrs["scan_step_nm"])
    else:
        assert ds.attrs["scan_step_nm"] == pytest.approx(step)
    plugin = importlib.import_module(f"rsciio.{RSCIIO_FORMATS[src.suffix]}")
    expected = np.asarray(plugin.file_reader(str(src))[0]["data"])
    np.testing.assert_array_equal(ds["intensity"].values, expected)
    assert tree_checksum(src) == before


@requires_real_data
@requires_rsciio
def test_single_pattern_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="2-D array"):
        convert(REAL_DATA / "Amorphous.hspy", tmp_path / "out.zarr")
    assert list(tmp_path.iterdir()) == []


@requires_real_data
def test_missing_reader_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("rsciio"):
            raise ImportError("No module named 'rsciio'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr("importlib.import_module", lambda name: fake_import(name))
    with pytest.raises(InputError, match=r"dask_stemnmf\[io\]"):
        read_raw(REAL_DATA / "test1.blo")


def test_graph_is_built_without_computing(tmp_path, raise_if_dask_computes):
    from dask_stemnmf.convert import dataset_from_raw

    src, _ = npy_scan(tmp_path)
    with dask.config.set(scheduler=raise_if_dask_computes):
        ds, _ = dataset_from_raw(read_raw(src))
    assert raise_if_dask_computes.calls == 0
    with dask.config.set(scheduler="synchronous"):
        assert ds["intensity"].sum().compute() > 0


def _hyperspy_signal(data):
    axes = [
        {"name": "y", "size": 3, "scale": 0.5, "offset": 0.0, "units": "nm", "navigate": True},
        {"name": "x", "size": 4, "scale": 0.5, "offset": 0.0, "units": "nm", "navigate": True},
        {
            "name": "ky",
            "size": 5,
            "scale": 0.02,
            "offset": -0.04,
            "units": "1/Å",
            "navigate": False,
        },
        {
            "name": "kx",
            "size": 6,
            "scale": 0.02,
            "offset": -0.06,
            "units": "1/Å",
            "navigate": False,
        },
    ]
    tem = {"beam_energy": 300.0, "convergence_angle": 0.9}
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": "t"}, "Acquisition_instrument": {"TEM": tem}},
        "original_metadata": {},
        "tmp_parameters": {},
        "attributes": {"_lazy": False},
        "learning_results": {},
        "models": {},
        "package_info": {"name": "dask_stemnmf_tests", "version": "0"},
    }


def _hspy_to_zspy(hspy_path, zspy_path):
    """Copy a HyperSpy HDF5 hierarchy into a zarr format 2 store: the .zspy layout."""
    import h5py
    import zarr

    def plain(attrs):
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}

    root = zarr.open_group(zspy_path, mode="w", zarr_format=2)

    def copy(name, obj):
        if isinstance(obj, h5py.Group):
            root.require_group(name).attrs.update(plain(obj.attrs))
        else:
            root.create_array(
                name, shape=obj.shape, dtype=obj.dtype, chunks=(1, 2) + obj.shape[2:]
            )[:] = obj[()]

    with h5py.File(hspy_path, "r") as f:
        root.attrs.update(plain(f.attrs))
        f.visititems(copy)


@requires_rsciio
@pytest.mark.parametrize("suffix", [".hspy", ".zspy"])
def test_hyperspy_files_convert_with_calibrations_and_beam(tmp_path, suffix):
    from rsciio import hspy

    data = np.arange(3 * 4 * 5 * 6, dtype="uint16").reshape(3, 4, 5, 6)
    hspy.file_writer(str(tmp_path / "s.hspy"), _hyperspy_signal(data))
    src = tmp_path / f"s{suffix}"
    if suffix == ".zspy":
        _hspy_to_zspy(tmp_path / "s.hspy", src)
    result = convert(src, tmp_path / "out.zarr")
    assert result.notes == []
    ds = open_4dstem(result.output)
    np.testing.assert_array_equal(ds["intensity"].values, data)
    assert ds.attrs["beam_energy_kev"] == 300.0 and ds.attrs["convergence_semiangle_mrad"] == 0.9
    assert ds.attrs["scan_step_nm"] == 0.5
    assert float(ds["k_x"][0]) == pytest.approx(-0.6) and float(
        ds["k_x"][1] - ds["k_x"][0]
    ) == pytest.approx(0.2)
