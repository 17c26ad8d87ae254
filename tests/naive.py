"""Slow, obviously-correct references for the fast code."""

from __future__ import annotations

import math

import numpy as np


def value_stats(values: np.ndarray) -> list[float]:
    """[n_nan, n_inf, n_negative, finite min, finite max] by a Python loop."""
    n_nan = n_inf = n_neg = 0
    lo, hi = math.inf, -math.inf
    for v in np.asarray(values, dtype=np.float64).ravel().tolist():
        if math.isnan(v):
            n_nan += 1
        elif math.isinf(v):
            n_inf += 1
        else:
            n_neg += v < 0
            lo, hi = min(lo, v), max(hi, v)
    return [n_nan, n_inf, n_neg, lo, hi]


def disc(
    shape: tuple[int, int], cy: float, cx: float, radius: float, oversample: int = 16
) -> np.ndarray:
    """Disc coverage per pixel by supersampling each pixel on an oversample^2 grid."""
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    yy = np.arange(shape[0])[:, None, None, None] + sub[None, None, :, None] - cy
    xx = np.arange(shape[1])[None, :, None, None] + sub[None, None, None, :] - cx
    return (np.hypot(yy, xx) <= radius).mean(axis=(2, 3))


def radial_mean(image: np.ndarray, cy: float, cx: float, step: float = 1.0) -> np.ndarray:
    """Azimuthal mean in rings of width ``step`` pixels."""
    yy, xx = np.indices(image.shape)
    r = (np.hypot(yy - cy, xx - cx) / step).astype(int).ravel()
    return np.bincount(r, image.ravel()) / np.maximum(np.bincount(r), 1)


def dct_power_beyond(image: np.ndarray, step_nm: float, cutoff: float) -> float:
    """Fraction of a 2-D map's DCT-II power at spatial frequencies above ``cutoff`` (1/nm)."""
    from scipy.fft import dctn

    coeffs = dctn(image, type=2, norm="ortho")
    ny, nx = image.shape
    fy = np.arange(ny)[:, None] / (2 * ny * step_nm)
    fx = np.arange(nx)[None, :] / (2 * nx * step_nm)
    power = coeffs**2
    return float(power[np.hypot(fy, fx) > cutoff].sum() / power.sum())


def rotate(image: np.ndarray, cy: float, cx: float, angle_deg: float) -> np.ndarray:
    """Rotate ``image`` about ``(cy, cx)`` by ``angle_deg`` counter-clockwise (from +x toward
    +y, the simulator's and the polar transform's sense), with cubic interpolation."""
    from scipy.ndimage import map_coordinates

    t = np.deg2rad(angle_deg)
    yy, xx = np.indices(image.shape, dtype=float)
    dy, dx = yy - cy, xx - cx
    # the value at (y, x) comes from the point turned back by -angle
    sy = cy - np.sin(t) * dx + np.cos(t) * dy
    sx = cx + np.cos(t) * dx + np.sin(t) * dy
    return map_coordinates(image, [sy, sx], order=3, mode="constant")


def hals_nmf(
    D: np.ndarray, C0: np.ndarray, S0: np.ndarray, iters: int, sweeps: int
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Plain in-memory HALS with the engine's normalisation; float64; returns C, S, losses."""
    D = np.asarray(D, dtype=np.float64)
    scale = S0.sum(axis=0)
    S = S0 / scale
    C = C0.astype(np.float64) * scale
    d2 = float(np.sum(D * D))
    losses = []
    for _ in range(iters):
        P, G = D @ S, S.T @ S
        for _ in range(sweeps):
            for k in range(C.shape[1]):
                C[:, k] = np.maximum(0, C[:, k] + (P[:, k] - C @ G[:, k]) / G[k, k])
        Q, H = D.T @ C, C.T @ C
        for _ in range(sweeps):
            for k in range(S.shape[1]):
                S[:, k] = np.maximum(0, S[:, k] + (Q[:, k] - S @ H[:, k]) / H[k, k])
        scale = S.sum(axis=0)
        S, C = S / scale, C * scale
        losses.append(float(np.sum((D - C @ S.T) ** 2)) / d2)
    return C, S, losses


def closing_raise(pattern: np.ndarray, radius: int) -> np.ndarray:
    """How much a grey closing with a (2r+1)-wide disc raises each pixel, by explicit loops."""
    ny, nx = pattern.shape
    offsets = [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if dy * dy + dx * dx <= radius * radius
    ]
    padded = np.pad(pattern, radius, mode="edge")
    dil = np.full_like(pattern, -np.inf)
    for dy, dx in offsets:
        dil = np.maximum(
            dil, padded[radius + dy : radius + dy + ny, radius + dx : radius + dx + nx]
        )
    padded = np.pad(dil, radius, mode="edge")
    ero = np.full_like(pattern, np.inf)
    for dy, dx in offsets:
        ero = np.minimum(
            ero, padded[radius - dy : radius - dy + ny, radius - dx : radius - dx + nx]
        )
    return ero - pattern


def diffraction_noise(maps: np.ndarray, diffractions: np.ndarray) -> np.ndarray:
    """Counting-noise std of each diffraction pixel, by the explicit sum over positions.

    ``maps (K, N)`` and ``diffractions (K, M)``. For Poisson data of mean
    ``L = maps^T diffractions`` the estimate ``D^T c_k / |c_k|^2`` of diffraction ``k`` has
    variance ``sum_i c_ik^2 L_ij / |c_k|^4`` at pixel ``j``, in the diffractions' units.
    """
    lam = maps.T @ diffractions  # (N, M)
    out = np.zeros_like(diffractions)
    for k in range(maps.shape[0]):
        c = maps[k]
        c2 = float(c @ c)
        if c2 <= 0:
            continue
        var = (c * c) @ lam / c2**2  # variance of D^T c / |c|^2, in counts-per-map-unit
        out[k] = np.sqrt(np.maximum(var, 0))
    return out


def best_assignment(score: np.ndarray) -> dict[int, int]:
    """Row -> column assignment maximising the total score (rows <= columns), by brute force."""
    import itertools

    n_rows, n_cols = score.shape
    assert n_rows <= n_cols
    best, choice = -np.inf, {}
    for cols in itertools.permutations(range(n_cols), n_rows):
        total = sum(score[i, j] for i, j in enumerate(cols))
        if total > best:
            best, choice = total, dict(enumerate(cols))
    return choice
