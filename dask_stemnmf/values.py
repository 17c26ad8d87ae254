"""Value checks over a whole scan: NaN, Inf and negative counts, in one pass.

The chunk statistics come from :func:`dask_stemnmf._kernels.values.chunk_value_stats`;
they combine by dask's tree reductions (sums for counts, min/max for the range).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from ._kernels.values import N_STATS, chunk_pixel_sums, chunk_value_stats

__all__ = ["ValueReport", "value_report_from", "value_stats"]


@dataclass(frozen=True)
class ValueReport:
    """What a pass over the values found.

    Attributes
    ----------
    n_values
        Number of values checked.
    n_nan, n_inf, n_negative
        Counts of NaN, +-Inf and finite negative values.
    minimum, maximum
        Finite range (NaN when nothing was checked or nothing is finite).
    checked
        False when the dtype rules the problems out and no pass was made (unsigned integers).
    """

    n_values: int
    n_nan: int
    n_inf: int
    n_negative: int
    minimum: float
    maximum: float
    checked: bool = True

    @property
    def ok(self) -> bool:
        """True when there is no NaN, Inf or negative value."""
        return self.n_nan == 0 and self.n_inf == 0 and self.n_negative == 0

    def problems(self) -> list[str]:
        """One line per problem, naming the count and what to do about it."""
        lines = []
        if self.n_nan or self.n_inf:
            lines.append(
                f"{self.n_nan} NaN and {self.n_inf} Inf values of {self.n_values}; the analysis "
                "refuses them unless they are masked (detector_mask or a scan mask)"
            )
        if self.n_negative:
            lines.append(
                f"{self.n_negative} negative values (min {self.minimum:g}), e.g. from background "
                "subtraction; the analysis needs negative='clip' or negative='offset'"
            )
        return lines

    def as_dict(self) -> dict[str, float | int | bool]:
        """Return the report as plain numbers (for attrs and JSON)."""
        return {
            "n_values": self.n_values,
            "n_nan": self.n_nan,
            "n_inf": self.n_inf,
            "n_negative": self.n_negative,
            "min": self.minimum,
            "max": self.maximum,
            "checked": self.checked,
        }


def needs_value_pass(dtype: np.dtype) -> bool:
    """Whether values of ``dtype`` can be NaN, Inf or negative (all but unsigned ints)."""
    return np.dtype(dtype).kind != "u"


def value_stats(array: da.Array) -> da.Array:
    """Lazy ``(5,)`` statistics ``[n_nan, n_inf, n_negative, min, max]`` of ``array``.

    One chunk task per input chunk, then tree reductions; nothing is computed here.

    Parameters
    ----------
    array
        Any dask array of real numbers.

    Returns
    -------
    dask.array.Array
        ``(5,)`` float64, to compute together with other work on the same array so the
        data are read once.
    """
    per_chunk = da.map_blocks(
        _stats_block,
        array,
        chunks=tuple((1,) * len(c) for c in array.chunks) + ((N_STATS,),),
        new_axis=array.ndim,
        dtype=np.float64,
        token="value-stats",
    )
    flat = per_chunk.reshape(-1, N_STATS)
    counts = flat[:, :3].sum(axis=0)
    lo = flat[:, 3].min(keepdims=True)
    hi = flat[:, 4].max(keepdims=True)
    return da.concatenate([counts, lo, hi])


def _stats_block(block: np.ndarray) -> np.ndarray:
    return chunk_value_stats(block).reshape((1,) * block.ndim + (N_STATS,))


def value_report_from(stats: np.ndarray, n_values: int) -> ValueReport:
    """Turn computed :func:`value_stats` into a :class:`ValueReport`."""
    lo, hi = float(stats[3]), float(stats[4])
    return ValueReport(
        n_values=int(n_values),
        n_nan=int(stats[0]),
        n_inf=int(stats[1]),
        n_negative=int(stats[2]),
        minimum=lo if np.isfinite(lo) else float("nan"),
        maximum=hi if np.isfinite(hi) else float("nan"),
    )


def unchecked_report(n_values: int) -> ValueReport:
    """Report for an unsigned-integer array: no NaN, Inf or negative value is possible."""
    return ValueReport(int(n_values), 0, 0, 0, float("nan"), float("nan"), checked=False)


def _sums_block(block: np.ndarray) -> np.ndarray:
    return chunk_pixel_sums(block).reshape(1, 1, -1)


def pixel_sums(array: da.Array, split_every: int = 8) -> da.Array:
    """Lazy ``(2, M)`` float64 per-pixel sums and sums of squares over the scan positions.

    One chunk task per scan chunk (a numba loop, no float64 copy of the chunk), then a tree
    reduction.

    Parameters
    ----------
    array
        ``(scan_y, scan_x, *signal)`` dask array chunked over the scan only.
    split_every
        Fan-in of the tree reduction.

    Returns
    -------
    dask.array.Array
        Row 0: sums; row 1: sums of squares; ``M`` columns (the flattened signal).
    """
    m = int(np.prod(array.shape[2:]))
    per_chunk = da.map_blocks(
        _sums_block,
        array,
        chunks=(tuple(1 for _ in array.chunks[0]), tuple(1 for _ in array.chunks[1]), (2 * m,)),
        drop_axis=list(range(2, array.ndim)),
        new_axis=2,
        dtype=np.float64,
        token="pixel-sums",
    )
    return per_chunk.sum(axis=(0, 1), split_every=split_every).reshape(2, m)
