"""Dask graphs of the NMF statistics over scan chunks (DESIGN section 4).

``data`` is the scan's ``intensity`` dask array, ``(scan_y, scan_x, *signal)`` in its stored
dtype, chunked over the scan only; ``C`` is a ``(scan_y, scan_x, K)`` float32 dask array
chunked like the scan; ``S`` (``M x K``) and the ``K x K`` matrices are numpy arrays on the
driver. Chunk tasks convert counts to float32 themselves. Per-chunk partial sums combine by
dask's tree reductions. Nothing here computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from .._kernels.constraints import constrained_hals_maps
from .._kernels.nmf import hals_sweeps, loss_change, mu_step, nnls_clip

__all__ = [
    "NO_TRANSFORM",
    "Transform",
    "c_update",
    "c_update_constrained",
    "data_products",
    "from_rows",
    "fused_update",
    "kl_c_update",
    "kl_statistics",
    "row_statistics",
    "s_statistics",
    "split_statistics",
    "to_rows",
]

_SIG = {3: "e", 4: "ab"}


def _sig_index(data: da.Array) -> str:
    return _SIG[data.ndim]


def _shared(array: np.ndarray, name: str) -> da.Array:
    """Wrap ``array`` as one chunk with one key, shared by every task that reads it."""
    return da.from_array(array, chunks=array.shape, name=f"{name}-{tokenize(array)}")


def _rows(block: np.ndarray) -> tuple[int, int]:
    return block.shape[0], block.shape[1]


def _one(x: Any) -> np.ndarray:
    """Unwrap the single block that blockwise passes as a list along a contracted axis.

    Blockwise graphs here use ``concatenate=False``: with ``True`` dask copies even a single
    block through ``concatenate3``, a full copy of each data chunk per task.
    """
    while isinstance(x, list):
        (x,) = x
    return x


@dataclass(frozen=True, eq=False)
class Transform:
    """How chunk tasks turn a data chunk into the matrix the fit sees.

    Attributes
    ----------
    pixels
        ``(M,)`` indices of the fitted detector pixels; ``None`` for all.
    col_scale
        ``(M,)`` factor per fitted pixel (Poisson normalisation: ``1/sqrt(mean)``).
    row_scale
        ``(scan_y, scan_x)`` factor per position, a dask array chunked like the scan.
    """

    pixels: np.ndarray | None = None
    col_scale: np.ndarray | None = None
    row_scale: da.Array | None = None

    def args(self) -> tuple[Any, ...]:
        """Blockwise arguments: the columns' description, then the row factors."""
        if self.pixels is None and self.col_scale is None:
            cols: tuple[Any, ...] = (None, None)
        else:
            if self.pixels is not None:
                idx = self.pixels
            else:
                assert self.col_scale is not None
                idx = np.arange(self.col_scale.size)
            scale = self.col_scale if self.col_scale is not None else np.ones(idx.size)
            packed = np.vstack([idx.astype(np.float64), scale.astype(np.float64)])
            cols = (_shared(packed, "nmf-columns"), "zm")
        rows = (None, None) if self.row_scale is None else (self.row_scale, "yx")
        return (*cols, *rows)

    def token(self) -> str:
        """Deterministic token of the transform (for task names)."""
        return tokenize(self.pixels, self.col_scale, self.row_scale)


NO_TRANSFORM = Transform()


def _matrix(block: Any, cols: Any, rows: Any) -> np.ndarray:
    """Flatten a chunk to float32 ``(positions, fitted pixels)``, scaled as asked.

    The flattened chunk can be a view of data held in memory: scaling makes a new array,
    never changes the chunk in place.
    """
    raw = _one(block)
    flat = raw.reshape(raw.shape[0] * raw.shape[1], -1)
    return _transform_rows(flat, cols, None if rows is None else _one(rows).reshape(-1))


def _transform_rows(flat: np.ndarray, cols: Any, factor: np.ndarray | None) -> np.ndarray:
    """Float32 ``(rows, fitted pixels)`` from ``(rows, pixels)`` of any dtype; never in place."""
    d = np.ascontiguousarray(flat, dtype=np.float32)
    fresh = not np.shares_memory(d, flat)
    if cols is not None:
        packed = _one(cols)
        if packed.shape[1] != d.shape[1]:
            d = np.take(d, packed[0].astype(np.int64), axis=1)
            fresh = True
        if not np.all(packed[1] == 1.0):
            scale = packed[1].astype(np.float32)
            if fresh:
                d *= scale
            else:
                d = d * scale
                fresh = True
    if factor is not None:
        f = np.asarray(factor, dtype=np.float32).reshape(-1, 1)
        d = np.multiply(d, f, out=d) if fresh else d * f
    return d


#: Bytes of float32 data a chunk task works on at a time: a few MiB stay in the cache while
#: the map update and the statistics both read them.
ROW_BLOCK_BYTES = 4 << 20


def _fitted_pixels(block: Any, cols: Any) -> int:
    """Return the number of detector pixels a chunk task fits (after the column selection)."""
    return int(_one(cols).shape[1]) if cols is not None else int(np.prod(_one(block).shape[2:]))


def _row_blocks(block: Any, cols: Any, rows: Any) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, d)``: a chunk's matrix (as :func:`_matrix`) a few MiB of rows at a time.

    Converting, selecting and scaling block by block keeps each block in the cache for all
    the products that read it, and never makes a float32 copy of a whole integer chunk.
    """
    raw = _one(block)
    n = raw.shape[0] * raw.shape[1]
    flat = raw.reshape(n, -1)
    factor = None if rows is None else _one(rows).reshape(-1)
    step = max(16, ROW_BLOCK_BYTES // (4 * max(_fitted_pixels(block, cols), 1)))
    for start in range(0, n, step):
        stop = min(n, start + step)
        part = None if factor is None else factor[start:stop]
        yield start, _transform_rows(flat[start:stop], cols, part)


def _row_chunk(block: Any, cols: Any, rows: Any) -> np.ndarray:
    cy, cx = _rows(_one(block))
    d = _matrix(block, cols, None)  # fitted pixels, columns scaled
    packed = _one(cols)
    raw = d / packed[1].astype(np.float32) if cols is not None else d
    out = np.empty((cy, cx, 2), dtype=np.float64)
    out[..., 0] = raw.mean(axis=1, dtype=np.float64).reshape(cy, cx)
    out[..., 1] = np.square(d, dtype=np.float64).sum(axis=1).reshape(cy, cx)
    return out


def row_statistics(data: da.Array, transform: Transform) -> da.Array:
    """Per position: mean over the fitted pixels, and the sum of squares after column scaling.

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    transform
        Fitted pixels and column factors (its row factors are ignored).

    Returns
    -------
    dask.array.Array
        ``(scan_y, scan_x, 2)`` float64, chunked like the scan.
    """
    sig = _sig_index(data)
    cols = Transform(pixels=transform.pixels, col_scale=transform.col_scale)
    return da.blockwise(
        _row_chunk, "yxt", data, "yx" + sig, *cols.args(),
        new_axes={"t": 2}, dtype=np.float64, concatenate=False,
        name=f"nmf-rows-{tokenize(data, cols.token())}",
    )  # fmt: skip


def _p_chunk(block: Any, s: Any, cols: Any, rows: Any) -> np.ndarray:
    s = _one(s)
    cy, cx = _rows(_one(block))
    out = np.empty((cy * cx, s.shape[1]), dtype=np.float32)
    for start, d in _row_blocks(block, cols, rows):
        out[start : start + d.shape[0]] = d @ s
    return out.reshape(cy, cx, s.shape[1])


def data_products(data: da.Array, S: np.ndarray, transform: Transform = NO_TRANSFORM) -> da.Array:
    """``P = D S`` as a ``(scan_y, scan_x, K)`` float32 array chunked like the scan."""
    s = _shared(S.astype(np.float32), "nmf-S")
    sig = _sig_index(data)
    return da.blockwise(
        _p_chunk, "yxk", data, "yx" + sig, s, "mk", *transform.args(),
        dtype=np.float32, concatenate=False, name=f"nmf-DS-{tokenize(data, s, transform.token())}",
    )  # fmt: skip


def _solve_rows(
    w: np.ndarray, p: np.ndarray, g: np.ndarray, solver: str, sweeps: int, inner_tol: float
) -> np.ndarray:
    """Return new rows of ``w`` for ``p = D s``, ``g = s^T s`` (rows are independent)."""
    if solver == "hals":
        w = np.array(w, dtype=np.float32, order="C")
        hals_sweeps(w, p, g, sweeps, inner_tol)
        return w
    if solver == "mu":
        return mu_step(w, p, g)
    return nnls_clip(p, g)


def _update_rows(
    block: Any,
    cols: Any,
    rows: Any,
    c: np.ndarray,
    s: np.ndarray,
    *,
    g: np.ndarray,
    solver: str,
    sweeps: int,
    inner_tol: float,
    scale: np.ndarray | None,
    stats: np.ndarray | None = None,
    precise: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Update one chunk's maps, a cache-sized block of rows at a time.

    When ``stats`` (``(M, K)`` float64) is given, ``D_c^T C_c`` with the new rows is added to
    it from the same blocks, so the chunk is read from memory once.

    Returns the new rows ``(n, K)`` and the ``(cy, cx, K + 1)`` output block whose extra
    channel holds the exact loss change at ``[0, 0, K]``.
    """
    cy, cx, k = c.shape
    old = np.array(c.reshape(cy * cx, k), dtype=np.float32, order="C")
    if scale is not None:
        old *= scale
    w = np.empty_like(old)
    dloss = 0.0
    for start, d in _row_blocks(block, cols, rows):
        stop = start + d.shape[0]
        p = d @ s
        w[start:stop] = _solve_rows(old[start:stop], p, g, solver, sweeps, inner_tol)
        dloss += loss_change(old[start:stop], w[start:stop], p, g)
        if stats is not None:
            _add_dtc(stats, d, w[start:stop], precise)
    out = np.zeros((cy, cx, k + 1), dtype=np.float32)
    out[..., :k] = w.reshape(cy, cx, k)
    out[0, 0, k] = dloss
    return w, out


def _gram_stats(w: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out``'s last ``2K`` rows with ``C_c^T C_c`` and ``C_c^T (C_c * C_c)``."""
    k = w.shape[1]
    w64 = w.astype(np.float64)
    out[-2 * k : -k] = w64.T @ w64
    out[-k:] = w64.T @ (w64 * w64)


def _c_chunk(block: Any, c: np.ndarray, s: Any, cols: Any, rows: Any, **update: Any) -> np.ndarray:
    _, out = _update_rows(block, cols, rows, c, _one(s), **update)
    return out


def c_update(
    data: da.Array,
    C: da.Array,
    S: np.ndarray,
    *,
    solver: str = "hals",
    sweeps: int = 10,
    inner_tol: float = 0.01,
    scale: np.ndarray | None = None,
    transform: Transform = NO_TRANSFORM,
) -> tuple[da.Array, da.Array]:
    """Update the maps chunk by chunk for fixed diffractions ``S`` (no map constraint).

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    C
        ``(scan_y, scan_x, K)`` current maps, chunked like the scan.
    S
        ``(M, K)`` diffractions.
    solver
        ``"hals"``, ``"mu"`` or ``"als"``.
    sweeps, inner_tol
        HALS inner-loop limits.
    scale
        ``(K,)`` factors applied to ``C`` first (the previous normalisation of ``S``).
    transform
        Fitted pixels and Poisson-normalisation factors.

    Returns
    -------
    C : dask.array.Array
        New maps, same shape and chunks as the old.
    dloss : dask.array.Array
        Scalar: the exact change of the loss ``||D - C S^T||^2`` (new minus old).
    """
    s = _shared(S.astype(np.float32), "nmf-S")
    g = (S.T.astype(np.float64) @ S.astype(np.float64)).astype(np.float32)
    sig = _sig_index(data)
    k = S.shape[1]
    tr = transform.token()
    out = da.blockwise(
        _c_chunk, "yxk", data, "yx" + sig, C, "yxk", s, "mk", *transform.args(),
        dtype=np.float32, concatenate=False, adjust_chunks={"k": k + 1},
        g=g, solver=solver, sweeps=sweeps, inner_tol=inner_tol,
        scale=None if scale is None else scale.astype(np.float32),
        name=f"nmf-update-C-{tokenize(data, C, s, g, solver, sweeps, inner_tol, scale, tr)}",
    )  # fmt: skip
    return _split_update(out, k)


def _split_update(out: da.Array, k: int) -> tuple[da.Array, da.Array]:
    """Split an update's ``(scan_y, scan_x, K + 1)`` output into maps and loss change."""
    return out[..., :k], out[..., k].astype(np.float64).sum()


def _stats_chunk(block: Any, c: np.ndarray, cols: Any, rows: Any, *, precise: bool) -> np.ndarray:
    """One chunk's partial statistics, a cache-sized block of rows at a time."""
    cy, cx, k = c.shape
    w = np.asarray(c.reshape(cy * cx, k), dtype=np.float32)
    m = _fitted_pixels(block, cols)
    out = np.zeros((1, 1, m + 2 * k, k), dtype=np.float64)
    for start, d in _row_blocks(block, cols, rows):
        _add_dtc(out[0, 0, :m], d, w[start : start + d.shape[0]], precise)
    _gram_stats(w, out[0, 0])
    return out


def _add_dtc(stats: np.ndarray, d: np.ndarray, w: np.ndarray, precise: bool) -> None:
    """Add ``d^T w`` to ``stats`` (``(M, K)`` float64); in float64 throughout when precise."""
    if precise:
        stats += d.astype(np.float64).T @ w.astype(np.float64)
    else:
        stats += np.dot(d.T, w)


def s_statistics(
    data: da.Array,
    C: da.Array,
    split_every: int = 8,
    precise: bool = False,
    transform: Transform = NO_TRANSFORM,
) -> da.Array:
    """Tree-reduced ``[Q; H; T]`` for the diffraction update, lazily.

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    C
        ``(scan_y, scan_x, K)`` maps chunked like the scan.
    split_every
        Fan-in of the tree reduction.
    precise
        Multiply in float64 (twice the cost) rather than float32; for the one loss that is
        not tracked by exact changes.
    transform
        Fitted pixels and Poisson-normalisation factors.

    Returns
    -------
    dask.array.Array
        ``(M + 2K, K)`` float64: rows ``:M`` hold ``Q = D^T C``, rows ``M:M+K`` hold
        ``H = C^T C`` and rows ``M+K:M+2K`` hold ``T = C^T (C * C)`` (for the counting noise
        of the diffractions); see :func:`split_statistics`.
    """
    m = int(np.prod(data.shape[2:])) if transform.pixels is None else len(transform.pixels)
    k = C.shape[-1]
    sig = _sig_index(data)
    per_chunk = da.blockwise(
        _stats_chunk, "yxrk", data, "yx" + sig, C, "yxk", *transform.args(),
        new_axes={"r": m + 2 * k}, adjust_chunks={"y": 1, "x": 1}, precise=precise,
        dtype=np.float64, concatenate=False,
        name=f"nmf-stats-{tokenize(data, C, precise, transform.token())}",
    )  # fmt: skip
    return per_chunk.sum(axis=(0, 1), split_every=split_every)


def split_statistics(stats: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split computed :func:`s_statistics` into ``Q (M, K)``, ``H (K, K)`` and ``T (K, K)``."""
    k = stats.shape[1]
    return stats[:m], stats[m : m + k], stats[m + k : m + 2 * k]


def c_update_constrained(
    P: da.Array,
    C: da.Array,
    S: np.ndarray,
    keep: np.ndarray,
    *,
    sweeps: int = 2,
    n_iter: int = 50,
    scale: np.ndarray | None = None,
    row: np.ndarray | None = None,
) -> tuple[da.Array, da.Array]:
    """Update the maps under the map-resolution constraint (a global step, one task).

    The band limit couples every position of a map, so this step gathers ``P`` and ``C``
    (``N x K``, small next to the data) into one task, updates there, and re-chunks the
    result like the scan.

    Parameters
    ----------
    P
        ``(scan_y, scan_x, K)`` ``D S`` from :func:`data_products`.
    C
        ``(scan_y, scan_x, K)`` current maps.
    S
        ``(M, K)`` diffractions (for ``G = S^T S``).
    keep
        ``(scan_y, scan_x)`` band-limit mask of the DCT coefficients.
    sweeps, n_iter
        Component sweeps and Dykstra steps per projection.
    scale
        ``(K,)`` factors applied to ``C`` first.
    row
        ``(scan_y, scan_x)`` positive factors from the fitted to the physical maps (noise
        normalisation), which carry the constraint; ``None`` when they are the same.

    Returns
    -------
    C : dask.array.Array
        New maps, chunked like the old.
    dloss : dask.array.Array
        Scalar: the exact change of the loss (new minus old).
    """
    g = S.T.astype(np.float64) @ S.astype(np.float64)
    c = C if scale is None else C * scale.astype(np.float32)
    k = S.shape[1]
    whole = (-1, -1, -1)
    out = da.map_blocks(
        _constrained_chunk, c.rechunk(whole), P.rechunk(whole),
        g=g, keep=keep, sweeps=sweeps, n_iter=n_iter, row=row, dtype=np.float32,
        chunks=(C.shape[0], C.shape[1], k + 1),
        name=f"nmf-update-C-constrained-{tokenize(P, c, g, keep, sweeps, n_iter, row)}",
    )  # fmt: skip
    new, dloss = _split_update(out, k)
    return new.rechunk(C.chunks), dloss


def _constrained_chunk(
    c: np.ndarray,
    p: np.ndarray,
    *,
    g: np.ndarray,
    keep: np.ndarray,
    sweeps: int,
    n_iter: int,
    row: np.ndarray | None,
) -> np.ndarray:
    ny, nx, k = c.shape
    new = constrained_hals_maps(c, p, g, keep, sweeps, n_iter, row)
    out = np.zeros((ny, nx, k + 1), dtype=np.float32)
    out[..., :k] = new
    flat = (ny * nx, k)
    out[0, 0, k] = loss_change(c.reshape(flat), new.reshape(flat), p.reshape(flat), g)
    return out


def to_rows(data: da.Array) -> da.Array:
    """View the scan as a ``(N, M)`` matrix, rows in block-major order (no data moves).

    Row ``r`` of the result is a scan position inside one scan chunk; the chunks follow
    each other in C order. :func:`from_rows` maps ``(N, K)`` results back.
    """
    m = int(np.prod(data.shape[2:]))
    rows = []
    for i in range(data.numblocks[0]):
        for j in range(data.numblocks[1]):
            block = data.blocks[i, j]
            rows.append(block.reshape(block.shape[0] * block.shape[1], m))
    return da.concatenate(rows, axis=0)


def from_rows(rows: da.Array, like: da.Array) -> da.Array:
    """Inverse of :func:`to_rows` for a ``(N, K)`` array: ``(scan_y, scan_x, K)``."""
    k = rows.shape[1]
    sizes = [cy * cx for cy in like.chunks[0] for cx in like.chunks[1]]
    rows = rows.rechunk((tuple(sizes), k))
    grid = []
    index = 0
    for cy in like.chunks[0]:
        line = []
        for cx in like.chunks[1]:
            line.append(rows.blocks[index].reshape(cy, cx, k))
            index += 1
        grid.append(line)
    return da.block([[[b] for b in line] for line in grid])


#: Floor of a reconstructed value in the KL updates (scikit-learn uses float32's eps too).
KL_EPS = float(np.finfo(np.float32).eps)


def _kl_ratio(d: np.ndarray, w: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``D / max(C S^T, eps)`` and the reconstruction, for one chunk."""
    lam = w @ s.T
    np.maximum(lam, KL_EPS, out=lam)
    return d / lam, lam


def _kl_c_chunk(
    block: Any, c: np.ndarray, s: Any, cols: Any, rows: Any, *, scale: np.ndarray | None
) -> np.ndarray:
    s = _one(s)
    cy, cx = _rows(_one(block))
    k = s.shape[1]
    w = c.reshape(cy * cx, k).astype(np.float64)
    if scale is not None:
        w = w * scale
    ratio, _ = _kl_ratio(_matrix(block, cols, rows).astype(np.float64), w, s)
    denom = np.maximum(s.sum(axis=0), KL_EPS)
    return (w * (ratio @ s) / denom).astype(np.float32).reshape(cy, cx, k)


def kl_c_update(
    data: da.Array,
    C: da.Array,
    S: np.ndarray,
    *,
    scale: np.ndarray | None = None,
    transform: Transform = NO_TRANSFORM,
) -> da.Array:
    """Multiplicative update of the maps for the generalised Kullback-Leibler loss.

    ``C <- C * ((D / (C S^T)) S) / (1^T S)``, chunk by chunk (each row is independent).

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    C
        ``(scan_y, scan_x, K)`` maps chunked like the scan.
    S
        ``(M, K)`` diffractions.
    scale
        ``(K,)`` factors applied to ``C`` first.
    transform
        Fitted pixels and factors.

    Returns
    -------
    dask.array.Array
        New maps, chunked like the old.
    """
    s = _shared(S.astype(np.float64), "nmf-S64")
    sig = _sig_index(data)
    return da.blockwise(
        _kl_c_chunk, "yxk", data, "yx" + sig, C, "yxk", s, "mk", *transform.args(),
        dtype=np.float32, concatenate=False, scale=scale,
        name=f"nmf-kl-C-{tokenize(data, C, s, scale, transform.token())}",
    )  # fmt: skip


def _kl_stats_chunk(block: Any, c: np.ndarray, s: Any, cols: Any, rows: Any) -> np.ndarray:
    s = _one(s)
    cy, cx = _rows(_one(block))
    m, k = s.shape
    w = c.reshape(cy * cx, k).astype(np.float64)
    d = _matrix(block, cols, rows).astype(np.float64)
    ratio, lam = _kl_ratio(d, w, s)
    out = np.zeros((1, 1, m + 2, k), dtype=np.float64)
    out[0, 0, :m] = ratio.T @ w
    out[0, 0, m] = w.sum(axis=0)
    positive = d > 0
    out[0, 0, m + 1, 0] = float(
        np.sum(d[positive] * np.log(d[positive] / lam[positive])) - d.sum() + lam.sum()
    )
    return out


def kl_statistics(
    data: da.Array,
    C: da.Array,
    S: np.ndarray,
    split_every: int = 8,
    transform: Transform = NO_TRANSFORM,
) -> da.Array:
    """Tree-reduced statistics of the KL diffraction update, lazily.

    Returns
    -------
    dask.array.Array
        ``(M + 2, K)`` float64: rows ``:M`` hold ``(D / (C S^T))^T C``, row ``M`` the column
        sums of ``C`` and element ``[M + 1, 0]`` the generalised KL divergence
        ``sum D log(D / C S^T) - D + C S^T`` at ``(C, S)``.
    """
    m = S.shape[0]
    s = _shared(S.astype(np.float64), "nmf-S64")
    sig = _sig_index(data)
    per_chunk = da.blockwise(
        _kl_stats_chunk, "yxrk", data, "yx" + sig, C, "yxk", s, "mk", *transform.args(),
        new_axes={"r": m + 2}, adjust_chunks={"y": 1, "x": 1},
        dtype=np.float64, concatenate=False,
        name=f"nmf-kl-stats-{tokenize(data, C, s, transform.token())}",
    )  # fmt: skip
    return per_chunk.sum(axis=(0, 1), split_every=split_every)


def _fused_chunk(
    block: Any, c: Any, s: Any, cols: Any, rows: Any, *, precise: bool, **update: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Map update and the diffraction statistics of one chunk, from one read of it."""
    s = _one(s)
    m, k = s.shape
    stats = np.zeros((1, 1, m + 2 * k, k), dtype=np.float64)
    w, maps = _update_rows(
        block, cols, rows, _one(c), s, stats=stats[0, 0, :m], precise=precise, **update
    )
    _gram_stats(w, stats[0, 0])
    return maps, stats


def _first(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return pair[0]


def _second(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return pair[1]


def fused_update(
    data: da.Array,
    C: da.Array,
    S: np.ndarray,
    *,
    solver: str = "hals",
    sweeps: int = 10,
    inner_tol: float = 0.01,
    scale: np.ndarray | None = None,
    transform: Transform = NO_TRANSFORM,
    precise: bool = False,
    split_every: int = 8,
) -> tuple[da.Array, da.Array, da.Array]:
    """One iteration's map update and diffraction statistics from a single task per chunk.

    The same results as :func:`c_update` followed by :func:`s_statistics`, but each chunk
    is read, converted and transformed once: the task returns the new maps and the partial
    statistics together, and two light tasks per chunk split them.

    Returns
    -------
    C : dask.array.Array
        New maps, chunked like the old.
    dloss : dask.array.Array
        Scalar: the exact change of the loss from the map update.
    stats : dask.array.Array
        ``(M + 2K, K)`` tree-reduced statistics, as :func:`s_statistics`.
    """
    s = _shared(S.astype(np.float32), "nmf-S")
    g = (S.T.astype(np.float64) @ S.astype(np.float64)).astype(np.float32)
    sig = _sig_index(data)
    k = S.shape[1]
    m = S.shape[0]
    token = tokenize(data, C, s, g, solver, sweeps, inner_tol, scale, transform.token(), precise)
    pairs = da.blockwise(
        _fused_chunk, "yx", data, "yx" + sig, C, "yxk", s, "mk", *transform.args(),
        dtype=object, concatenate=False, meta=np.empty((0, 0), dtype=object),
        g=g, solver=solver, sweeps=sweeps, inner_tol=inner_tol, precise=precise,
        scale=None if scale is None else scale.astype(np.float32),
        name=f"nmf-iteration-{token}",
    )  # fmt: skip
    out = da.map_blocks(
        _first, pairs, new_axis=2, chunks=(*C.chunks[:2], (k + 1,)),
        dtype=np.float32, meta=np.empty((0, 0, 0), np.float32), name=f"nmf-maps-{token}",
    )  # fmt: skip
    per_chunk = da.map_blocks(
        _second, pairs, new_axis=[2, 3],
        chunks=(tuple(1 for _ in C.chunks[0]), tuple(1 for _ in C.chunks[1]), (m + 2 * k,), (k,)),
        dtype=np.float64, meta=np.empty((0, 0, 0, 0)), name=f"nmf-partials-{token}",
    )  # fmt: skip
    new, dloss = _split_update(out, k)
    return new, dloss, per_chunk.sum(axis=(0, 1), split_every=split_every)
