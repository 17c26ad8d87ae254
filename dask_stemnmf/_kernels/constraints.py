"""The two physical constraints of Kimoto et al. as pure array functions.

Map resolution: a map may hold no spatial frequency above a cutoff ``q_c``. The set of such
maps is a linear subspace; with non-negativity it is convex, and we project onto the
intersection by Dykstra's alternating projections. The band limit is taken in the DCT-II
domain, whose implicit mirror extension does not cut the signal at the scan edges the way a
periodic FFT would.

Diffraction continuity: a diffraction is continuous intensity with upward peaks and no local
dips. A grey-scale closing with a disc about one Bragg disc across raises exactly the dips
narrower than the disc; we fill those the closing raises by more than a threshold, never
lower a pixel, and leave upward peaks and broad valleys unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.fft import dctn, idctn

__all__ = [
    "bandlimit_mask",
    "constrained_hals_maps",
    "dip_depth",
    "disc_footprint",
    "fill_dips",
    "project_bandlimited_nonnegative",
]


def bandlimit_mask(shape: tuple[int, int], step_nm: float, cutoff_inv_nm: float) -> np.ndarray:
    """DCT-II coefficients kept by the band limit.

    Coefficient ``(u, v)`` of an ``(ny, nx)`` map sampled every ``step_nm`` has spatial
    frequency ``sqrt((u / 2 ny)^2 + (v / 2 nx)^2) / step_nm`` cycles per nm.

    Parameters
    ----------
    shape
        Map shape ``(ny, nx)``.
    step_nm
        Scan step in nm.
    cutoff_inv_nm
        Highest frequency kept, cycles per nm.

    Returns
    -------
    numpy.ndarray
        ``shape`` bool, True where a coefficient is kept.
    """
    ny, nx = shape
    fy = np.arange(ny)[:, None] / (2.0 * ny * step_nm)
    fx = np.arange(nx)[None, :] / (2.0 * nx * step_nm)
    return np.hypot(fy, fx) <= cutoff_inv_nm


def _project_band(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    coeffs = dctn(x, type=2, norm="ortho")
    coeffs[~keep] = 0.0
    return idctn(coeffs, type=2, norm="ortho")


def project_bandlimited_nonnegative(
    v: np.ndarray, keep: np.ndarray, n_iter: int = 50, tol: float = 1e-10
) -> np.ndarray:
    """Euclidean projection of a map onto {band-limited} ∩ {non-negative} (Dykstra).

    A map already inside the set comes back unchanged (up to rounding).

    Parameters
    ----------
    v
        ``(ny, nx)`` map.
    keep
        Band-limit mask from :func:`bandlimit_mask`.
    n_iter
        Most alternating steps.
    tol
        Stop when a step changes the iterate by less than ``tol`` times its norm (squared).

    Returns
    -------
    numpy.ndarray
        ``(ny, nx)`` float64, band-limited; negative values below ``tol`` of the maximum
        are rounding and set to zero.
    """
    x = np.asarray(v, dtype=np.float64)
    q = np.zeros_like(x)
    y = x
    for _ in range(n_iter):
        y = _project_band(x, keep)  # a subspace: Dykstra needs no correction term for it
        x_new = np.maximum(y + q, 0.0)
        q = y + q - x_new
        change = float(np.sum((x_new - x) ** 2))
        x = x_new
        if change <= tol * max(float(np.sum(x * x)), 1e-300):
            break
    # the band-limited iterate, with rounding-level negatives removed
    y = _project_band(x, keep)
    return np.maximum(y, 0.0)


def disc_footprint(radius_px: float) -> np.ndarray:
    """Boolean disc of the given radius in pixels (at least 3 x 3)."""
    r = max(1.0, float(radius_px))
    n = int(np.ceil(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    return np.hypot(yy, xx) <= r + 1e-9


def dip_depth(pattern: np.ndarray, radius_px: float) -> np.ndarray:
    """How much a grey-scale closing with a disc (a segment in 1-D) raises each pixel.

    Parameters
    ----------
    pattern
        ``(k_y, k_x)`` diffraction or ``(energy,)`` spectrum.
    radius_px
        Disc radius in pixels.

    Returns
    -------
    numpy.ndarray
        Same shape, ``closing - pattern >= 0``.
    """
    if pattern.ndim == 1:
        closed = ndimage.grey_closing(
            pattern, size=2 * max(1, round(radius_px)) + 1, mode="nearest"
        )
    else:
        closed = ndimage.grey_closing(pattern, footprint=disc_footprint(radius_px), mode="nearest")
    return closed - pattern


def fill_dips(
    pattern: np.ndarray,
    radius_px: float,
    threshold: float | np.ndarray,
    fraction: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Raise the dips deeper than ``threshold`` to ``threshold`` below the closing.

    This is the least change that leaves no pixel more than ``threshold`` below the closing
    (the closing of the result equals the closing of ``pattern``, because closing is
    increasing and idempotent), so valleys are made shallow rather than flattened, and the
    noise-level texture around them is kept. Pixels are never lowered.

    Parameters
    ----------
    pattern
        ``(k_y, k_x)`` or ``(energy,)`` non-negative pattern.
    radius_px
        Closing disc radius in pixels (about one Bragg disc).
    threshold
        Allowed depth, in the pattern's units: a number, or an array shaped like
        ``pattern`` (e.g. a multiple of the noise per pixel).
    fraction
        How far to raise a dip (1 raises it fully; less damps the step).

    Returns
    -------
    filled : numpy.ndarray
        The pattern with its dips raised.
    n : int
        Number of pixels raised.
    """
    excess = dip_depth(pattern, radius_px) - threshold
    dips = excess > 0
    out = pattern.copy()
    out[dips] += fraction * excess[dips]
    return out, int(dips.sum())


def constrained_hals_maps(
    c: np.ndarray,
    p: np.ndarray,
    g: np.ndarray,
    keep: np.ndarray,
    sweeps: int = 2,
    n_iter: int = 50,
    row: np.ndarray | None = None,
    mm_steps: int = 3,
) -> np.ndarray:
    """HALS update of all maps under the map-resolution constraint.

    For component ``k`` the loss is ``||s_k||^2 ||c_k - v_k||^2 + const`` with
    ``v_k = c_k + (p_k - C g_k) / g_kk``, so the exact minimiser over the convex set is the
    projection of ``v_k``: each column update is exact and the loss never increases.

    With row factors (noise normalisation: the fitted maps are ``c_k = u_k / row`` for the
    physical maps ``u_k``, which carry the constraint) the column loss is the weighted
    distance ``sum_i (u_i - row_i v_i)^2 / row_i^2``. Each column then takes ``mm_steps``
    majorise-minimise steps: the weighted distance is bounded above by its largest weight
    times a plain distance, whose minimiser over the set is a projection, so every step
    lowers the loss too.

    Parameters
    ----------
    c
        ``(ny, nx, K)`` current maps.
    p
        ``(ny, nx, K)`` data times diffractions, ``D S``.
    g
        ``(K, K)`` ``S^T S``.
    keep
        ``(ny, nx)`` band-limit mask.
    sweeps
        Sweeps over the components.
    n_iter
        Dykstra steps per projection.
    row
        ``(ny, nx)`` positive factors from fitted to physical maps, or ``None``.
    mm_steps
        Majorise-minimise steps per column when ``row`` is given.

    Returns
    -------
    numpy.ndarray
        ``(ny, nx, K)`` float32 maps whose physical maps (times ``row``) are band-limited
        and non-negative.
    """
    w = c.astype(np.float64)
    k = w.shape[-1]
    pp = p.astype(np.float64)
    gg = g.astype(np.float64)
    if row is not None:
        r = np.asarray(row, dtype=np.float64)
        weight = 1.0 / (r * r)
        step = weight / weight.max()
    for _ in range(sweeps):
        for j in range(k):
            if gg[j, j] <= 0:
                continue
            v = w[..., j] + (pp[..., j] - w @ gg[:, j]) / gg[j, j]
            if row is None:
                w[..., j] = project_bandlimited_nonnegative(v, keep, n_iter)
                continue
            target, u = r * v, r * w[..., j]
            for _ in range(mm_steps):
                u = project_bandlimited_nonnegative(u - step * (u - target), keep, n_iter)
            w[..., j] = u / r
    return w.astype(np.float32)
