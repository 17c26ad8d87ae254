"""Per-chunk value statistics: NaN, Inf and negative counts, finite range (numba)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["N_STATS", "chunk_pixel_sums", "chunk_value_stats"]

#: Length of the statistics vector: n_nan, n_inf, n_negative, finite min, finite max.
N_STATS = 5


@numba.njit(nogil=True, cache=True)
def _stats_kernel(flat: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    n_nan = 0
    n_inf = 0
    n_neg = 0
    lo = np.inf
    hi = -np.inf
    for i in range(flat.size):
        v = np.float64(flat[i])
        if np.isnan(v):
            n_nan += 1
        elif np.isinf(v):
            n_inf += 1
        else:
            if v < 0:
                n_neg += 1
            if v < lo:
                lo = v
            if v > hi:
                hi = v
    out[0] = n_nan
    out[1] = n_inf
    out[2] = n_neg
    out[3] = lo
    out[4] = hi


def chunk_value_stats(block: np.ndarray) -> np.ndarray:
    """Count NaN, +-Inf and negative values of a chunk and find its finite range.

    Parameters
    ----------
    block
        Any-shape real array.

    Returns
    -------
    numpy.ndarray
        ``(5,)`` float64: ``[n_nan, n_inf, n_negative, min, max]`` (min/max over finite
        values; ``+inf``/``-inf`` when there is none). Negative infinities count as Inf,
        not as negative.
    """
    out = np.empty(N_STATS, dtype=np.float64)
    _stats_kernel(np.ascontiguousarray(block).reshape(-1), out)
    return out


@numba.njit(nogil=True, cache=True)
def _pixel_sums_kernel(rows: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    n, m = rows.shape
    for i in range(n):
        for j in range(m):
            v = np.float64(rows[i, j])
            out[j] += v
            out[m + j] += v * v


def chunk_pixel_sums(block: np.ndarray) -> np.ndarray:
    """Per-pixel sums and sums of squares of a scan chunk, in float64, without copies.

    Parameters
    ----------
    block
        ``(cy, cx, *signal)`` chunk of any real dtype.

    Returns
    -------
    numpy.ndarray
        ``(2 M,)`` float64: the ``M`` per-pixel sums, then the ``M`` sums of squares.
    """
    rows = np.ascontiguousarray(block).reshape(block.shape[0] * block.shape[1], -1)
    out = np.zeros(2 * rows.shape[1], dtype=np.float64)
    _pixel_sums_kernel(rows, out)
    return out
