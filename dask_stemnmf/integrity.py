"""Silent corruption in stored scans: missing chunk files, truncated or corrupt chunks.

A zarr store reads a missing chunk file as fill values, so a copy that lost files looks like a
scan with empty regions. :func:`missing_chunks` lists them from the directory alone (no data
read); :func:`checked_intensity` reads the array chunk by chunk so that a chunk that cannot be
decoded raises an error naming it and the store, instead of a codec's bare message.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .errors import InputError

__all__ = ["checked_intensity", "missing_chunks"]


def _stamp(path: str, var: str) -> int:
    """Modification time of the array's metadata: a store replaced at the same path differs."""
    for name in ("zarr.json", ".zarray"):
        meta = Path(path) / var / name
        if meta.exists():
            return meta.stat().st_mtime_ns
    return 0


def _array(path: str, var: str) -> Any:
    return _cached_array(path, var, _stamp(path, var))


@functools.lru_cache(maxsize=16)
def _cached_array(path: str, var: str, stamp: int) -> Any:
    import zarr

    return zarr.open_group(path, mode="r")[var]


def _chunk_key(arr: Any, coords: tuple[int, ...]) -> str:
    metadata = arr.metadata
    if hasattr(metadata, "encode_chunk_key"):
        return str(metadata.encode_chunk_key(coords))
    separator = getattr(metadata, "dimension_separator", ".") or "."
    return separator.join(str(c) for c in coords)


def missing_chunks(store: str | os.PathLike[str], var: str = "intensity") -> list[tuple[int, ...]]:
    """Chunk grid coordinates of ``var`` whose files are absent from a local zarr store.

    Parameters
    ----------
    store
        Path of the zarr store (a directory).
    var
        The array in the store.

    Returns
    -------
    list of tuple of int
        Missing chunks, in grid order (empty when the store is complete).
    """
    root = Path(store)
    arr = _array(str(root), var)
    base = root / var
    present = {p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()}
    grid = tuple(-(-s // c) for s, c in zip(arr.shape, arr.chunks, strict=True))
    return [
        coords
        for coords in np.ndindex(*grid)
        if _chunk_key(arr, tuple(int(c) for c in coords)) not in present
    ]


def _read_block(path: str, var: str, chunks: tuple[int, ...], block_id: tuple[int, ...]) -> Any:
    arr = _array(path, var)
    index = tuple(
        slice(b * c, min((b + 1) * c, s))
        for b, c, s in zip(block_id, chunks, arr.shape, strict=True)
    )
    try:
        return np.asarray(arr[index])
    except Exception as exc:  # codecs raise many types for damaged bytes
        key = _chunk_key(arr, tuple(block_id))
        raise InputError(
            f"chunk {var}/{key} of {path} is truncated or corrupt ({type(exc).__name__}: "
            f"{exc}); restore the file or convert the scan again"
        ) from None


def checked_intensity(store: str | os.PathLike[str], var: str = "intensity") -> da.Array:
    """Read the stored array as a dask array, one task per stored chunk, naming a bad chunk.

    Parameters
    ----------
    store
        Path of the zarr store.
    var
        The array in the store.

    Returns
    -------
    dask.array.Array
        Chunked like the store.
    """
    path = str(Path(store))
    arr = _array(path, var)
    chunks = tuple(int(c) for c in arr.chunks)
    blocks = tuple(
        tuple(min(c, s - i) for i in range(0, s, c)) for c, s in zip(chunks, arr.shape, strict=True)
    )
    return da.map_blocks(
        functools.partial(_read_block, path, var, chunks), chunks=blocks, dtype=arr.dtype,
        meta=np.empty((0,) * len(chunks), dtype=arr.dtype),
        name=f"read-{var}-{da.core.tokenize(path, var, _stamp(path, var))}",
    )  # fmt: skip
