"""Diffraction continuity on the driver: counting noise and dip filling of all components."""

from __future__ import annotations

import numpy as np

from .._kernels.constraints import fill_dips

__all__ = ["fill_all", "poisson_sigma"]


def poisson_sigma(S: np.ndarray, h: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Counting-noise standard deviation of each diffraction pixel, ``(M, K)``.

    For counts ``D ~ Poisson(C S^T)`` the least-squares estimate ``S_k ~ D^T c_k / |c_k|^2``
    has variance ``sum_i c_ik^2 (C S^T)_ij / |c_k|^4 = (S T)_jk / H_kk^2`` with
    ``T = C^T (C * C)``, both from the pass's statistics (``S`` in the scale of ``C``).
    """
    diag = np.maximum(np.diag(h), 1e-300)
    return np.sqrt(np.maximum(S @ t, 0.0)) / diag


def fill_all(
    S: np.ndarray,
    idx: np.ndarray,
    sig_shape: tuple[int, ...],
    radius: float,
    threshold: float,
    floor: np.ndarray,
    fraction: float,
) -> tuple[np.ndarray, int]:
    """Fill every diffraction's dips deeper than ``max(threshold * peak, floor)``.

    Masked pixels (zeros) only shape the closing; ``floor`` is ``(M, K)`` (noise per pixel).
    """
    out = S.copy()
    total = 0
    full = np.zeros(int(np.prod(sig_shape)))
    depth_floor = np.zeros(int(np.prod(sig_shape)))
    for j in range(S.shape[1]):
        peak = float(S[:, j].max())
        if peak <= 0:
            continue
        full[:] = 0.0
        full[idx] = S[:, j]
        depth_floor[:] = np.inf
        depth_floor[idx] = np.maximum(threshold * peak, floor[:, j])
        filled, _ = fill_dips(
            full.reshape(sig_shape), radius, depth_floor.reshape(sig_shape), fraction
        )
        new = filled.reshape(-1)[idx]
        total += int((new > S[:, j]).sum())
        out[:, j] = new
    return out, total
