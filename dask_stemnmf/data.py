"""The labelled scan on zarr: open, save and chunk it.

Chunks hold whole patterns (the signal dims are never split); scan chunks aim at
:data:`TARGET_CHUNK_BYTES` of float32, the dtype of computation. Stored integer counts stay
integers on disk and in the opened dataset; kernels convert each chunk to float32.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr

from ._fsutil import atomic_output
from ._version import __version__
from .errors import InputError, StemNMFWarning
from .schema import SCAN_DIMS, SCHEMA_VERSION, validate_dataset

__all__ = [
    "TARGET_CHUNK_BYTES",
    "open_4dstem",
    "plan_scan_chunks",
    "rechunk_scan",
    "save_4dstem",
]

#: Size in bytes, as float32, that automatic chunking aims at (DESIGN: 64-256 MB).
TARGET_CHUNK_BYTES = 128 * 2**20
#: Bytes per element of the computation dtype.
COMPUTE_ITEMSIZE = 4

ChunksArg = Literal["auto"] | None | tuple[int, int] | Mapping[str, int]


def plan_scan_chunks(
    scan_shape: tuple[int, int],
    bytes_per_position: int,
    stored: tuple[int, int] | None = None,
    target_bytes: int = TARGET_CHUNK_BYTES,
) -> tuple[int, int]:
    """Choose scan chunks ``(cy, cx)`` of about ``target_bytes`` each.

    Stored chunks already within a factor two of the target are kept; smaller ones grow by
    whole multiples (first along ``scan_x``, then ``scan_y``) so that reads stay aligned to
    the storage; larger ones shrink, rows first.

    Parameters
    ----------
    scan_shape
        ``(scan_y, scan_x)`` sizes in positions.
    bytes_per_position
        Bytes of one whole pattern in the computation dtype.
    stored
        The stored scan chunks, if any.
    target_bytes
        Aimed-at chunk size in bytes.

    Returns
    -------
    tuple of int
        Chunk sizes along ``scan_y`` and ``scan_x`` in positions.
    """
    ny, nx = (int(s) for s in scan_shape)
    sy, sx = stored if stored is not None else (1, nx)
    sy, sx = max(1, min(int(sy), ny)), max(1, min(int(sx), nx))
    positions = max(1, int(target_bytes) // max(1, int(bytes_per_position)))
    size_bytes = sy * sx * bytes_per_position
    if size_bytes > 2 * target_bytes:
        if sx <= positions:
            sy = max(1, positions // sx)
        else:
            sy, sx = 1, positions
    elif size_bytes < target_bytes // 2 and (sy, sx) != (ny, nx):
        fx = min(math.ceil(nx / sx), max(1, positions // (sy * sx)))
        sx = min(nx, sx * fx)
        fy = min(math.ceil(ny / sy), max(1, positions // (sy * sx)))
        sy = min(ny, sy * fy)
    return sy, sx


def _scan_chunks_arg(chunks: ChunksArg, ds: xr.Dataset | None) -> tuple[int, int] | None:
    """Parse a ``chunks`` argument; ``None`` for "auto"/"keep". A mapping needs ``ds``."""
    if chunks is None or chunks == "auto":
        return None
    if isinstance(chunks, Mapping):
        if ds is None:
            raise InputError("chunks must be (cy, cx) here, e.g. (32, 32)")
        unknown = set(chunks) - set(SCAN_DIMS)
        if unknown:
            raise InputError(
                f"chunks names {sorted(unknown)}; only scan_y and scan_x may be chunked "
                "(signal dims always hold whole patterns)"
            )
        cy = chunks.get("scan_y", ds.sizes["scan_y"])
        cx = chunks.get("scan_x", ds.sizes["scan_x"])
    else:
        try:
            cy, cx = chunks
        except (TypeError, ValueError):
            raise InputError(
                f"chunks={chunks!r} is not understood; pass 'auto', None, (cy, cx) "
                "or {'scan_y': cy, 'scan_x': cx}"
            ) from None
    if int(cy) < 1 or int(cx) < 1:
        raise InputError(f"scan chunks must be positive, got ({cy}, {cx})")
    return int(cy), int(cx)


def rechunk_scan(ds: xr.Dataset, chunks: ChunksArg = "auto") -> xr.Dataset:
    """Rechunk ``intensity`` lazily: whole patterns per chunk, scan chunks as asked.

    Parameters
    ----------
    ds
        A scan following the data model.
    chunks
        ``"auto"`` (about :data:`TARGET_CHUNK_BYTES` of float32 per chunk, aligned to the
        current chunks), ``None`` (keep the current scan chunks), ``(cy, cx)`` or
        ``{"scan_y": cy, "scan_x": cx}``.

    Returns
    -------
    xarray.Dataset
        The same scan, ``intensity`` dask-backed with the new chunks.
    """
    sig = validate_dataset(ds)
    intensity = ds["intensity"]
    data = intensity.data
    if not isinstance(data, da.Array):
        data = da.from_array(data, chunks=(-1,) * data.ndim)
        chunks = "auto" if chunks is None else chunks
    scan_shape = (ds.sizes["scan_y"], ds.sizes["scan_x"])
    current = (data.chunks[0][0], data.chunks[1][0])
    split = [d for d, c in zip(sig, data.chunks[2:], strict=True) if len(c) > 1]
    asked = _scan_chunks_arg(chunks, ds)
    if asked is None:
        bpp = COMPUTE_ITEMSIZE * math.prod(data.shape[2:])
        asked = current if chunks is None else plan_scan_chunks(scan_shape, bpp, current)
    if split:
        warnings.warn(
            f"chunks split the patterns along {split}; rechunked to whole patterns "
            f"with scan chunks {asked} (re-save the store to avoid this on every read)",
            StemNMFWarning,
            stacklevel=3,
        )
    target = (asked[0], asked[1]) + tuple(-1 for _ in sig)
    if split or asked != current or not _regular(data.chunks[:2]):
        data = data.rechunk(target)
    return ds.assign(intensity=intensity.copy(data=data))


def _regular(chunks: tuple[tuple[int, ...], ...]) -> bool:
    return all(len(set(c[:-1])) <= 1 and c[-1] <= c[0] for c in chunks)


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any(
        (path / name).exists() for name in ("zarr.json", ".zgroup", ".zattrs", ".zarray")
    )


def open_4dstem(
    store: str | os.PathLike[str],
    *,
    chunks: ChunksArg = "auto",
    missing_chunks: str = "refuse",
) -> xr.Dataset:
    """Open a scan saved in the dask_stemnmf zarr layout, read-only and lazily.

    Parameters
    ----------
    store
        Path of a zarr store (format 3, or format 2) written by :func:`save_4dstem`,
        ``stemnmf convert`` or ``stemnmf simulate``.
    chunks
        Scan chunking, see :func:`rechunk_scan`. Patterns are never split: chunks that split
        them are fixed lazily, with a :class:`~dask_stemnmf.errors.StemNMFWarning`.
    missing_chunks
        A store whose chunk files are missing would read as zeros there. ``"refuse"``
        (default): an error naming them. ``"mask"``: they read as zeros (a zero pattern adds
        nothing to a fit) and ``scan_mask (scan_y, scan_x)`` marks them False, with a note.

    Returns
    -------
    xarray.Dataset
        ``intensity`` with dims ``(scan_y, scan_x, k_y, k_x)`` or ``(scan_y, scan_x, energy)``
        as a dask array in the stored dtype (read chunk by chunk; a truncated or corrupt
        chunk raises an error naming it when read); coordinates in nm, 1/nm (or mrad) and eV.

    Raises
    ------
    InputError
        If the path is missing, is not a zarr store, does not follow the data model, or
        misses chunk files (unless ``missing_chunks="mask"``).
    """
    path = Path(store).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if not _is_zarr_store(path):
        raise InputError(
            f"{path} is not a zarr store; convert it first with `stemnmf convert {path} OUT.zarr`"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            ds = xr.open_zarr(path, chunks={}, mask_and_scale=False, consolidated=None)
        except Exception as exc:  # zarr raises many types for unreadable metadata
            raise InputError(f"{path} cannot be read as a zarr store: {exc}") from exc
    if missing_chunks not in ("refuse", "mask"):
        raise InputError(f"missing_chunks={missing_chunks!r}; choose 'refuse' or 'mask'")
    if "intensity" in ds.variables:
        ds = _checked(ds, path, missing_chunks)
    return rechunk_scan(ds, chunks)


def _checked(ds: xr.Dataset, path: Path, mode: str) -> xr.Dataset:
    """Swap in a chunk-naming reader; find missing chunk files (listing only)."""
    from .integrity import checked_intensity, missing_chunks

    try:
        lost = missing_chunks(path, "intensity")
        data = checked_intensity(path, "intensity")
    except (KeyError, TypeError, ValueError, OSError):
        return ds  # not a plain local zarr array: keep xarray's reader
    if data.shape != ds["intensity"].shape:
        raise InputError(f"{path}: intensity's metadata disagree with the stored array")
    ds = ds.assign(intensity=(ds["intensity"].dims, data, ds["intensity"].attrs))
    if not lost:
        return ds
    total = int(np.prod(data.numblocks))
    first = lost[0]
    if mode == "refuse":
        raise InputError(
            f"{path}: {len(lost)} of {total} chunk files of intensity are missing (the first "
            f"at chunk {tuple(first)}) and would read as zeros; restore the store, or pass "
            "missing_chunks='mask' (`--missing-chunks mask`) to fit without those positions"
        )
    keep = np.ones(ds["intensity"].shape[:2], dtype=bool)
    cy, cx = data.chunksize[:2]
    for coords in lost:
        keep[coords[0] * cy : (coords[0] + 1) * cy, coords[1] * cx : (coords[1] + 1) * cx] = False
    warnings.warn(
        f"{path}: {len(lost)} of {total} chunk files are missing; their "
        f"{int((~keep).sum())} positions read as zeros and are marked in scan_mask",
        StemNMFWarning,
        stacklevel=3,
    )
    return ds.assign(scan_mask=(("scan_y", "scan_x"), keep))


def _plain(value: Any) -> Any:
    """Make an attribute value JSON-friendly (numpy scalars, tuples, nested dicts)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _clean_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in attrs.items()}


def save_4dstem(
    ds: xr.Dataset,
    store: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    chunks: ChunksArg = None,
    clevel: int = 5,
) -> Path:
    """Write a scan to a zarr (format 3) store, atomically.

    The data is written to a hidden temporary store beside ``store`` and renamed into place
    when complete, so a failed or killed write never leaves a partial store at ``store``.
    ``intensity`` keeps its dtype and is compressed with Blosc-LZ4 (bit shuffle), one chunk
    per scan chunk holding whole patterns. Writing streams chunk by chunk on the active Dask
    scheduler.

    Parameters
    ----------
    ds
        The scan, following the data model (``intensity`` plus any extra variables, e.g. the
        simulator's ground truth).
    store
        Destination path.
    overwrite
        Replace an existing store at ``store``.
    chunks
        Scan chunking of the stored ``intensity`` (see :func:`rechunk_scan`); ``None`` keeps
        the current chunks.
    clevel
        Blosc compression level, 1-9.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    write_scan(ds, store, overwrite=overwrite, chunks=chunks, clevel=clevel)
    return Path(store)


def write_scan(
    ds: xr.Dataset,
    store: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    chunks: ChunksArg = None,
    clevel: int = 5,
    also: tuple[Any, ...] = (),
    extra_attrs: Callable[[tuple[Any, ...]], Mapping[str, Any]] | None = None,
) -> tuple[Any, ...]:
    """Write a scan atomically and compute ``also`` in the same pass over the data.

    Parameters
    ----------
    ds, store, overwrite, chunks, clevel
        As for :func:`save_4dstem`.
    also
        Dask collections computed together with the write (e.g. value statistics of
        ``ds.intensity``), so the data are read once.
    extra_attrs
        Called with the computed ``also``; the attributes it returns are added to the store
        before it is renamed into place.

    Returns
    -------
    tuple
        The computed ``also``.
    """
    import dask
    import zarr
    from zarr.codecs import BloscCodec

    validate_dataset(ds)
    ds = rechunk_scan(ds, chunks)
    ds = ds.copy()
    for var in ds.variables.values():
        var.encoding = {}
        var.attrs = _clean_attrs(var.attrs)
    ds.attrs = _clean_attrs(ds.attrs)
    ds.attrs["schema_version"] = SCHEMA_VERSION
    ds.attrs.setdefault("writer", f"dask_stemnmf {__version__}")
    intensity = ds["intensity"].data
    encoding = {
        "intensity": {
            "chunks": tuple(c[0] for c in intensity.chunks),
            "compressors": [BloscCodec(cname="lz4", clevel=clevel, shuffle="bitshuffle")],
            "_FillValue": None,
        }
    }
    with atomic_output(store, overwrite=overwrite) as tmp:
        delayed = ds.to_zarr(
            tmp, mode="w-", zarr_format=3, encoding=encoding, consolidated=False, compute=False
        )
        _, *results = dask.compute(delayed, *also)
        if extra_attrs is not None:
            group = zarr.open_group(tmp, mode="r+")
            group.attrs.update(_clean_attrs(extra_attrs(tuple(results))))
    return tuple(results)
