"""NMF update kernels on plain arrays (numba and BLAS), one chunk or one factor at a time.

Notation (DESIGN section 4): ``D ~ C S^T`` with ``D`` (N positions x M pixels), ``C`` (N x K
maps) and ``S`` (M x K diffractions). A chunk kernel sees the rows ``D_c`` of one scan chunk.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "as_matrix",
    "hals_sweeps",
    "loss_change",
    "mu_step",
    "nnls_clip",
]

#: Floor of multiplicative updates' denominators.
EPS = 1e-12


def as_matrix(block: np.ndarray) -> np.ndarray:
    """Flatten a scan chunk ``(cy, cx, *signal)`` of any real dtype to float32 ``(cy*cx, M)``."""
    rows = block.shape[0] * block.shape[1]
    return np.ascontiguousarray(block.reshape(rows, -1), dtype=np.float32)


@numba.njit(nogil=True, cache=True)
def _hals_sweeps(
    w: np.ndarray, p: np.ndarray, g: np.ndarray, max_sweeps: int, rel_tol: float
) -> int:  # pragma: no cover - numba
    n, k = w.shape
    total = 0
    for i in range(n):
        first = 0.0
        for sweep in range(max_sweeps):
            change = 0.0
            for j in range(k):
                gjj = g[j, j]
                if gjj <= 0.0:
                    continue
                acc = p[i, j]
                for m in range(k):
                    acc -= w[i, m] * g[m, j]
                new = w[i, j] + acc / gjj
                if new < 0.0:
                    new = 0.0
                d = new - w[i, j]
                change += d * d
                w[i, j] = new
            if sweep == 0:
                first = change
            if change <= rel_tol * first:
                total += sweep + 1
                break
        else:
            total += max_sweeps
    return total


def hals_sweeps(
    w: np.ndarray, p: np.ndarray, g: np.ndarray, max_sweeps: int = 10, rel_tol: float = 0.01
) -> int:
    """Update ``w`` in place by HALS column sweeps (Gillis-Glineur inner loops).

    Minimises ``||X - w h^T||^2`` over ``w >= 0`` for fixed ``h``, from the statistics alone:
    ``p = X h`` and ``g = h^T h``. Each column update is the exact minimiser in that column, so
    the objective never increases. Rows are independent problems: each row stops after
    ``max_sweeps`` sweeps or once a sweep changes it by less than ``rel_tol`` times its first
    sweep's change (squared norms), so the result does not depend on how rows are chunked.

    Parameters
    ----------
    w
        ``(n, K)`` float32 or float64 factor, C-contiguous, updated in place.
    p
        ``(n, K)`` same dtype: the data times the other factor.
    g
        ``(K, K)`` same dtype: the other factor's Gram matrix.
    max_sweeps, rel_tol
        Inner-loop limits.

    Returns
    -------
    int
        Sweeps done, summed over rows.
    """
    return int(
        _hals_sweeps(w, p.astype(w.dtype, copy=False), g.astype(w.dtype), max_sweeps, rel_tol)
    )


def mu_step(w: np.ndarray, p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """One Lee-Seung multiplicative update for the least-squares loss.

    Parameters
    ----------
    w
        ``(n, K)`` current factor (non-negative).
    p
        ``(n, K)`` data times the other factor.
    g
        ``(K, K)`` the other factor's Gram matrix.

    Returns
    -------
    numpy.ndarray
        ``w * p / max(w g, eps)``, same shape and dtype as ``w``.
    """
    denom = w @ g.astype(w.dtype)
    np.maximum(denom, EPS, out=denom)
    return (w * np.maximum(p, 0) / denom).astype(w.dtype, copy=False)


def nnls_clip(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Least squares then clipping (the ALS update): ``max(0, p g^+)``.

    Parameters
    ----------
    p
        ``(n, K)`` data times the other factor.
    g
        ``(K, K)`` the other factor's Gram matrix.

    Returns
    -------
    numpy.ndarray
        ``(n, K)`` non-negative factor, dtype of ``p``.
    """
    sol = np.linalg.lstsq(g.astype(np.float64), p.astype(np.float64).T, rcond=None)[0].T
    return np.maximum(sol, 0).astype(p.dtype)


def loss_change(old: np.ndarray, new: np.ndarray, p: np.ndarray, g: np.ndarray) -> float:
    """Exact change of ``||X - w h^T||^2`` when ``w`` goes from ``old`` to ``new``.

    With ``p = X h``, ``g = h^T h`` and ``dw = new - old`` the change is
    ``<dw g - 2 (p - old g), dw>``, computed in float64 from the difference itself, so it
    keeps its precision when the change is tiny next to the loss (where subtracting two
    losses would cancel).

    Parameters
    ----------
    old, new
        ``(n, K)`` factors before and after.
    p
        ``(n, K)`` data times the other factor.
    g
        ``(K, K)`` the other factor's Gram matrix.

    Returns
    -------
    float
        New loss minus old loss.
    """
    o = old.astype(np.float64)
    d = new.astype(np.float64) - o
    gg = g.astype(np.float64)
    return float(np.sum((d @ gg - 2.0 * (p.astype(np.float64) - o @ gg)) * d))
