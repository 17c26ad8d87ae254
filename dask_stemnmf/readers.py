"""Lazy readers of detector files: ``.npy``, HDF5/EMD (h5py) and rosettasciio formats.

Each reader returns a :class:`RawScan`: a lazy dask array with the scan axes first, plus
the calibration of each axis as the file states it. Nothing is loaded whole: ``.npy`` is
memory-mapped and HDF5 datasets are sliced per chunk; both readers open the file inside
each task, so the graphs can run on worker processes. Converting units into the data model
is :mod:`dask_stemnmf.convert`'s job.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .data import COMPUTE_ITEMSIZE, plan_scan_chunks
from .errors import InputError
from .schema import check_dtype

__all__ = ["RSCIIO_FORMATS", "Axis", "RawScan", "read_raw"]


@dataclass(frozen=True)
class Axis:
    """Linear calibration of one array axis as stored in the file.

    Attributes
    ----------
    scale
        Step per pixel in ``units`` (1.0 when uncalibrated).
    offset
        Value of the first pixel in ``units``.
    units
        Unit string as written in the file ("" when uncalibrated).
    name
        Axis name in the file, for messages.
    """

    scale: float = 1.0
    offset: float = 0.0
    units: str = ""
    name: str = ""


@dataclass
class RawScan:
    """A scan as read from a file, before conversion to the data model.

    Attributes
    ----------
    data
        Lazy ``(scan_y, scan_x, k_y, k_x)`` or ``(scan_y, scan_x, energy)`` array.
    axes
        One :class:`Axis` per dimension of ``data``.
    attrs
        Calibration attributes found in the file's metadata (``beam_energy_kev``, ...).
    description
        Format and location, e.g. ``"HDF5 dataset /datacube_root/datacube/data"``.
    """

    data: da.Array
    axes: list[Axis]
    attrs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


#: File suffix -> rosettasciio plugin module.
RSCIIO_FORMATS: dict[str, str] = {
    ".mib": "quantumdetector",
    ".hdr": "quantumdetector",
    ".blo": "blockfile",
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".hspy": "hspy",
    ".zspy": "zspy",
    ".app5": "topspin",
    ".xml": "empad",
    ".mrc": "mrc",
}
HDF5_SUFFIXES = (".h5", ".hdf5", ".emd", ".hdf")


class _NpySlicer:
    """Picklable array-like over a ``.npy`` file; memory-maps it on every read."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype, self.ndim = str(path), shape, dtype, len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r")[key])


class _H5Slicer:
    """Picklable array-like over an HDF5 dataset; opens the file on every read."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.name, self.shape, self.dtype = str(path), name, shape, dtype
        self.ndim = len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.name][key])


def _check_shape(shape: tuple[int, ...], path: Path, where: str) -> None:
    if len(shape) not in (3, 4):
        raise InputError(
            f"{path}{where} holds a {len(shape)}-D array {tuple(shape)}, not a 4-D scan "
            "(scan_y, scan_x, k_y, k_x) or a 3-D spectrum image (scan_y, scan_x, energy); "
            "convert a scan, not a single pattern or image"
        )
    if min(shape) < 1:
        raise InputError(f"{path}{where} is empty: shape {tuple(shape)}")


def _scan_chunks(
    shape: tuple[int, ...], stored: tuple[int, int] | None, asked: tuple[int, int] | None
) -> tuple[int, ...]:
    if asked is not None:
        cy, cx = asked
    else:
        bpp = COMPUTE_ITEMSIZE * math.prod(shape[2:])
        cy, cx = plan_scan_chunks((shape[0], shape[1]), bpp, stored)
    return (min(cy, shape[0]), min(cx, shape[1])) + tuple(-1 for _ in shape[2:])


def _chunked(
    array: Any,
    shape: tuple[int, ...],
    stored: tuple[int, int] | None,
    asked: tuple[int, int] | None,
) -> da.Array:
    return da.from_array(array, chunks=_scan_chunks(shape, stored, asked), lock=False)


def _read_npy(path: Path, chunks: tuple[int, int] | None) -> RawScan:
    try:
        mm = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise InputError(f"{path} is not a readable .npy file: {exc}") from None
    check_dtype(mm.dtype, f"{path}")
    _check_shape(mm.shape, path, "")
    data = _chunked(_NpySlicer(path, mm.shape, mm.dtype), mm.shape, None, chunks)
    return RawScan(data, [Axis() for _ in mm.shape], {}, "NumPy .npy (memory-mapped)")


def _emd_axes(group: Any, ndim: int) -> list[Axis]:
    axes = []
    for i in range(ndim):
        dim = group.get(f"dim{i}")
        if dim is None or dim.ndim != 1 or dim.shape[0] < 1:
            axes.append(Axis())
            continue
        values = np.asarray(dim[: min(2, dim.shape[0])], dtype=float)
        scale = float(values[1] - values[0]) if values.size > 1 else 1.0
        units = dim.attrs.get("units", "")
        units = units.decode() if isinstance(units, bytes) else str(units)
        name = dim.attrs.get("name", "")
        name = name.decode() if isinstance(name, bytes) else str(name)
        axes.append(Axis(scale, float(values[0]), units, name))
    return axes


def _h5_candidates(f: Any) -> list[str]:
    import h5py

    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4) and obj.dtype.kind in "iuf":
            found.append("/" + name)

    f.visititems(visit)
    emd = [n for n in found if f[n].parent.attrs.get("emd_group_type") in ("array", b"array")]
    return emd or found


def _read_hdf5(path: Path, dataset: str | None, chunks: tuple[int, int] | None) -> RawScan:
    try:
        import h5py
    except ImportError:
        raise InputError(
            f"reading {path.suffix} files needs h5py: pip install 'dask_stemnmf[io]'"
        ) from None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path} is not a readable HDF5 file: {exc}") from None
    with f:
        if dataset is None:
            names = _h5_candidates(f)
            if not names:
                raise InputError(f"{path} holds no 3-D or 4-D numeric dataset to convert")
            if len(names) > 1:
                listed = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
                raise InputError(
                    f"{path} holds several candidate datasets ({listed}); "
                    "choose one with --dataset PATH"
                )
            dataset = names[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise InputError(f"{path} has no dataset {dataset!r}; list them with h5ls -r")
        dset = f[dataset]
        check_dtype(dset.dtype, f"{path}:{dataset}")
        _check_shape(dset.shape, path, f":{dataset}")
        axes = _emd_axes(dset.parent, dset.ndim)
        stored = (dset.chunks[0], dset.chunks[1]) if dset.chunks else None
        slicer = _H5Slicer(path, dset.name, dset.shape, dset.dtype)
        data = _chunked(slicer, dset.shape, stored, chunks)
    return RawScan(data, axes, {}, f"HDF5 dataset {dataset}")


def _metadata_attrs(metadata: dict[str, Any]) -> dict[str, Any]:
    tem = metadata.get("Acquisition_instrument", {}).get("TEM", {})
    attrs: dict[str, Any] = {}
    if "beam_energy" in tem:
        attrs["beam_energy_kev"] = float(tem["beam_energy"])
    if "convergence_angle" in tem:
        attrs["convergence_semiangle_mrad"] = float(tem["convergence_angle"])
    return attrs


def _read_rsciio(path: Path, plugin: str, chunks: tuple[int, int] | None) -> RawScan:
    try:
        module = importlib.import_module(f"rsciio.{plugin}")
    except ImportError as exc:
        raise InputError(
            f"reading {path.suffix} files needs the optional reader rosettasciio ({exc}); "
            "install it with: pip install 'dask_stemnmf[io]'"
        ) from None
    options: dict[str, Any] = {"lazy": True}
    if "show_progressbar" in inspect.signature(module.file_reader).parameters:
        options["show_progressbar"] = False  # one line per command, no progress bars
    try:
        signals = module.file_reader(str(path), **options)
    except TypeError:
        signals = module.file_reader(str(path))
    except Exception as exc:  # readers raise many types on malformed files
        raise InputError(f"{path} could not be read as {plugin}: {exc}") from None
    shapes = [tuple(np.shape(s["data"])) for s in signals]
    pick = next((i for i, s in enumerate(shapes) if len(s) in (3, 4)), None)
    if pick is None:
        _check_shape(shapes[0], path, "")
    signal = signals[pick]
    data = signal["data"]
    check_dtype(data.dtype, str(path))
    axes = [
        Axis(
            float(ax.get("scale", 1.0) or 1.0),
            float(ax.get("offset", 0.0) or 0.0),
            str(ax.get("units", "") or ""),
            str(ax.get("name", "")),
        )
        for ax in signal["axes"]
    ]
    if isinstance(data, da.Array):
        stored = (data.chunks[0][0], data.chunks[1][0])
        array = data.rechunk(_scan_chunks(data.shape, stored, chunks))
    else:
        array = _chunked(np.asarray(data), data.shape, None, chunks)
    attrs = _metadata_attrs(signal.get("metadata", {}))
    return RawScan(array, axes, attrs, f"rosettasciio {plugin}")


def read_raw(
    path: str | Path, *, dataset: str | None = None, chunks: tuple[int, int] | None = None
) -> RawScan:
    """Open a detector file lazily, choosing the reader by suffix.

    Parameters
    ----------
    path
        ``.npy``; ``.h5``/``.hdf5``/``.emd`` (py4DSTEM EMD 1.0 or plain HDF5, via h5py;
        Velox EMD via rosettasciio); or a format of :data:`RSCIIO_FORMATS` (needs the ``io``
        extra). Arrays are taken with the scan axes first.
    dataset
        HDF5 dataset path, when the file holds several candidates.
    chunks
        Scan chunks ``(cy, cx)`` to read in; default about 128 MiB of float32 per chunk,
        aligned to the file's own chunks where it has them.

    Returns
    -------
    RawScan
        The lazy data and the calibration found in the file.

    Raises
    ------
    InputError
        Missing path, unknown format, missing optional reader, or data that is not a 4-D
        scan or 3-D spectrum image of real numbers.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _read_npy(p, chunks)
    if suffix in HDF5_SUFFIXES:
        if suffix == ".emd" and dataset is None and _is_velox(p):
            return _read_rsciio(p, "emd", chunks)
        return _read_hdf5(p, dataset, chunks)
    if suffix in RSCIIO_FORMATS:
        if suffix == ".hdr":
            p = p.with_suffix(".mib")
        return _read_rsciio(p, RSCIIO_FORMATS[suffix], chunks)
    known = ", ".join(sorted({".npy", *HDF5_SUFFIXES, *RSCIIO_FORMATS, ".zarr"}))
    raise InputError(f"{p}: unknown format {suffix or '(no suffix)'!r}; supported: {known}")


def _is_velox(path: Path) -> bool:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return "Data" in f and "Version" in f
    except (ImportError, OSError):
        return False
