"""Polar transform of diffraction patterns and the azimuthal cross-correlation (pure kernels).

Angles are measured from the ``+k_x`` axis toward ``+k_y`` (array coordinates), in the
direction of increasing ``atan2(dy, dx)``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "azimuthal_correlation_max",
    "normalise_polar",
    "polar_grid",
    "polar_transform",
    "rotate_pattern",
]


def polar_grid(
    n_radii: int, n_angles: int, r_min: float, r_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sample radii (pixels, bin centres) and angles (radians, ``2 pi t / T``).

    Returns
    -------
    radii : numpy.ndarray
        ``(R,)`` float64, evenly spaced over ``[r_min, r_max]``.
    angles : numpy.ndarray
        ``(T,)`` float64 in ``[0, 2 pi)``.
    """
    radii = np.linspace(r_min, r_max, n_radii) if n_radii > 1 else np.array([0.5 * (r_min + r_max)])
    angles = 2.0 * np.pi * np.arange(n_angles) / n_angles
    return radii.astype(np.float64), angles.astype(np.float64)


@numba.njit(nogil=True, cache=True)
def _polar(
    patterns: np.ndarray, centres: np.ndarray, radii: np.ndarray, angles: np.ndarray
) -> np.ndarray:  # pragma: no cover - numba
    p, ny, nx = patterns.shape
    out = np.zeros((p, radii.size, angles.size), dtype=np.float64)
    cos = np.cos(angles)
    sin = np.sin(angles)
    for i in range(p):
        cy = centres[i, 0]
        cx = centres[i, 1]
        for a in range(radii.size):
            r = radii[a]
            for t in range(angles.size):
                y = cy + r * sin[t]
                x = cx + r * cos[t]
                y0 = int(np.floor(y))
                x0 = int(np.floor(x))
                fy = y - y0
                fx = x - x0
                acc = 0.0
                for dy in range(2):
                    yy = y0 + dy
                    if yy < 0 or yy >= ny:
                        continue
                    wy = fy if dy == 1 else 1.0 - fy
                    for dx in range(2):
                        xx = x0 + dx
                        if xx < 0 or xx >= nx:
                            continue
                        wx = fx if dx == 1 else 1.0 - fx
                        acc += wy * wx * patterns[i, yy, xx]
                out[i, a, t] = acc
    return out


def polar_transform(
    patterns: np.ndarray, centres: np.ndarray, radii: np.ndarray, angles: np.ndarray
) -> np.ndarray:
    """Sample patterns on a polar grid by bilinear interpolation (zero outside the detector).

    Parameters
    ----------
    patterns
        ``(P, k_y, k_x)`` patterns.
    centres
        ``(P, 2)`` centre ``(y, x)`` of each pattern in pixels (sub-pixel).
    radii
        ``(R,)`` radii in pixels.
    angles
        ``(T,)`` angles in radians.

    Returns
    -------
    numpy.ndarray
        ``(P, R, T)`` float64.
    """
    pats = np.ascontiguousarray(patterns, dtype=np.float64)
    cen = np.ascontiguousarray(np.broadcast_to(centres, (pats.shape[0], 2)), dtype=np.float64)
    return _polar(pats, cen, np.asarray(radii, np.float64), np.asarray(angles, np.float64))


def normalise_polar(polar: np.ndarray) -> np.ndarray:
    """Zero mean and unit norm over ``(r, theta)`` for each pattern; flat ones become zero.

    Parameters
    ----------
    polar
        ``(P, R, T)`` polar patterns.

    Returns
    -------
    numpy.ndarray
        ``(P, R, T)`` float64.
    """
    x = np.asarray(polar, dtype=np.float64)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    norm = np.sqrt(np.sum(x * x, axis=(1, 2), keepdims=True))
    return np.where(norm > 0, x / np.where(norm > 0, norm, 1.0), 0.0)


def azimuthal_correlation_max(
    spec_a: np.ndarray, spec_b: np.ndarray, n_angles: int, rows_per_step: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum over azimuthal shifts of the cross-correlation, and the maximising shift.

    ``rho_ij = max_tau sum_{r, theta} a_i(r, theta) b_j(r, theta + tau)``: with the spectra
    ``A = rfft_theta(a)`` and ``B = rfft_theta(b)`` the correlation over ``tau`` is the inverse
    transform of ``sum_r conj(A_i(r, f)) B_j(r, f)``, one complex matrix product per
    frequency ``f``. Rows of ``a`` are done ``rows_per_step`` at a time, so memory stays at
    ``rows_per_step * Q * T`` values.

    Parameters
    ----------
    spec_a, spec_b
        ``(P, R, F)`` and ``(Q, R, F)`` complex spectra along theta (``F = T // 2 + 1``).
    n_angles
        ``T``, the number of angles.
    rows_per_step
        Rows of ``a`` per step.

    Returns
    -------
    rho : numpy.ndarray
        ``(P, Q)`` float64 maxima.
    shift : numpy.ndarray
        ``(P, Q)`` int64 maximising shifts ``tau`` in angle bins, in ``[0, T)``.
    """
    from scipy import fft

    p = spec_a.shape[0]
    q = spec_b.shape[0]
    rho = np.empty((p, q), dtype=np.float64)
    shift = np.empty((p, q), dtype=np.int64)
    # (F, R, Q): one contiguous (R, Q) matrix per frequency
    b = np.ascontiguousarray(spec_b.transpose(2, 1, 0))
    for start in range(0, p, rows_per_step):
        stop = min(p, start + rows_per_step)
        a = np.ascontiguousarray(np.conj(spec_a[start:stop]).transpose(2, 0, 1))  # (F, P', R)
        cross = np.matmul(a, b)  # (F, P', Q)
        # the inverse transform and the maximum run along contiguous memory
        corr = fft.irfft(np.ascontiguousarray(cross.transpose(1, 2, 0)), n=n_angles, axis=-1)
        best = np.argmax(corr, axis=-1)
        shift[start:stop] = best
        rho[start:stop] = np.take_along_axis(corr, best[..., None], axis=-1)[..., 0]
    return rho, shift


def rotate_pattern(pattern: np.ndarray, centre: tuple[float, float], degrees: float) -> np.ndarray:
    """Rotate a pattern about ``centre`` by ``degrees`` in the polar grid's sense (bilinear).

    A feature at angle ``theta`` moves to ``theta + degrees``; outside the detector is zero.

    Parameters
    ----------
    pattern
        ``(k_y, k_x)`` pattern.
    centre
        ``(y, x)`` in pixels.
    degrees
        Rotation angle in degrees.

    Returns
    -------
    numpy.ndarray
        ``(k_y, k_x)`` float64.
    """
    from scipy import ndimage

    th = np.deg2rad(degrees)
    yy, xx = np.indices(pattern.shape, dtype=np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    # the value at (y, x) comes from the point turned back by -theta
    sy = centre[0] - dx * np.sin(th) + dy * np.cos(th)
    sx = centre[1] + dx * np.cos(th) + dy * np.sin(th)
    return ndimage.map_coordinates(
        np.asarray(pattern, dtype=np.float64), [sy, sx], order=1, mode="constant"
    )
