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
    """Rotate ``image`` about ``(cy, cx)`` by ``angle_deg`` (the simulator's sense), bilinear."""
    from scipy.ndimage import map_coordinates

    t = np.deg2rad(angle_deg)
    yy, xx = np.indices(image.shape, dtype=float)
    dy, dx = yy - cy, xx - cx
    # the simulator maps (y, x) -> (cos y - sin x, sin y + cos x); read through the inverse
    sy = cy + np.cos(t) * dy + np.sin(t) * dx
    sx = cx - np.sin(t) * dy + np.cos(t) * dx
    return map_coordinates(image, [sy, sx], order=1, mode="constant")
