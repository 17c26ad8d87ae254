"""Merge duplicate components and give the freed one a fresh start where the model falls short.

Least squares leaves NMF many equally good factorisations, and a fit from the SVD's leading
directions often spends two components on one source: two copies of the amorphous halo whose
maps hold complementary speckle (their sum is the smooth halo map), while a small precipitate
with a small singular value gets no component of its own and hides as a share of the others.
The residual is then at the counting-noise level, so no single update sees the better
solution. When the fit has converged, :func:`duplicate_pair` finds the two components whose
diffractions are most alike; if their cosine exceeds a threshold they are merged into one
(:func:`merge_columns`, which keeps the model's product for a true duplicate) and the freed
component starts again as a Gaussian blob (standard deviation one probe FWHM) where the
counts exceed the model's Poisson noise most, with the residual's pattern there
(:func:`residual_seed`); the fit then goes on.

Measured on 16 scans of both generators (48 x 48, 1,500-20,000 e/pattern; README, "Merging
duplicates"): the mean map cosine of the visible precipitates rose on 9 and fell on 2 (by at
most 0.01), the ARI rose on 4 and fell on none; the hardest kinematic scan at 20,000
e/pattern went from pattern / map cosine 0.81 / 0.62 to 0.83 / 0.76 (ARI 0.06 to 0.79), our
generator at 20,000 e/pattern from 0.90 / 0.87 to 0.95 / 0.96 (ARI 0.79 to 1.0).
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from .stats import NO_TRANSFORM, Transform, data_products, row_statistics, s_statistics

__all__ = ["duplicate_pair", "merge_columns", "residual_seed"]


def duplicate_pair(S: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """Return the two most alike diffractions ``(a, b)``, ``a < b``, if their cosine > threshold.

    Parameters
    ----------
    S
        ``(M, K)`` non-negative diffractions over the fitted pixels.
    threshold
        Least cosine of a duplicate pair, in ``(0, 1]``.

    Returns
    -------
    tuple of int or None
        The pair, or ``None`` when no two diffractions are that alike.
    """
    k = S.shape[1]
    if k < 2:
        return None
    norms = np.linalg.norm(S, axis=0)
    live = norms > 0
    cos = (S.T @ S) / np.maximum(np.outer(norms, norms), 1e-300)
    cos[~live, :] = cos[:, ~live] = 0.0
    np.fill_diagonal(cos, 0.0)
    a, b = np.unravel_index(int(np.argmax(cos)), cos.shape)
    if cos[a, b] <= threshold:
        return None
    return (int(min(a, b)), int(max(a, b)))


def merge_columns(
    C: da.Array, S: np.ndarray, a: int, b: int
) -> tuple[da.Array, np.ndarray, np.ndarray]:
    """Merge component ``b`` into ``a``: one map (their sum) and their map-weighted pattern.

    For ``S`` normalised to sum 1 each, ``c_a s_a^T + c_b s_b^T`` is kept exactly where the two
    patterns are equal, and the merged pattern still sums to 1.

    Parameters
    ----------
    C
        ``(scan_y, scan_x, K)`` maps in the scale of ``S``.
    S
        ``(M, K)`` diffractions, each summing to 1.
    a, b
        The pair.

    Returns
    -------
    C : dask.array.Array
        Maps with ``c_a + c_b`` in column ``a`` and zeros in column ``b``.
    S : numpy.ndarray
        Diffractions with the merged pattern in column ``a`` (column ``b`` unchanged).
    weights : numpy.ndarray
        ``(2,)`` the two maps' sums.
    """
    (weights,) = dask.compute(C[..., [a, b]].sum(axis=(0, 1), dtype=np.float64))
    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    S = S.copy()
    if total > 0:
        S[:, a] = (weights[0] * S[:, a] + weights[1] * S[:, b]) / total
    # one linear map of the components: column b adds into a, and is emptied
    move = np.eye(C.shape[-1], dtype=np.float32)
    move[b, a], move[b, b] = 1.0, 0.0
    return C @ move, S, weights


def residual_seed(
    data: da.Array,
    C: da.Array,
    S: np.ndarray,
    probe_px: float,
    transform: Transform = NO_TRANSFORM,
    counts: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Start a fresh component where the data exceed the model most: ``(map, pattern)``.

    Two passes over the data: the residual energy of each position (``||d_i||^2 - 2 d_i S
    c_i + c_i S^T S c_i``), less what Poisson noise gives (the model's counts, or one per
    fitted pixel for noise-normalised data), over the model's counts, smoothed over the probe;
    then, about the largest excess, a Gaussian blob whose standard deviation is the probe's
    FWHM (the width the README's measurements used) and the positive part of the residual's
    pattern under it, scaled to fit.

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    C
        ``(scan_y, scan_x, K)`` maps in the scale of ``S``.
    S
        ``(M, K)`` diffractions over the fitted pixels, each summing to 1.
    probe_px
        Probe FWHM in scan pixels (the blob's and the smoothing's scale).
    transform
        Fitted pixels and normalisation factors of the fit.
    counts
        Whether the fitted values are counts (Poisson noise equals the model).

    Returns
    -------
    blob : numpy.ndarray
        ``(scan_y, scan_x)`` float32 map.
    pattern : numpy.ndarray
        ``(M,)`` pattern summing to 1 (uniform where the residual is nowhere positive).
    """
    ny, nx = C.shape[:2]
    m = S.shape[0]
    P = data_products(data, S, transform)
    rows = row_statistics(data, Transform(transform.pixels, transform.col_scale))[..., 1]
    if transform.row_scale is not None:
        rows = rows * transform.row_scale.astype(np.float64) ** 2
    g = (S.T @ S).astype(np.float32)
    fitted = (P * C).sum(axis=-1, dtype=np.float64)
    modelled = ((C @ g) * C).sum(axis=-1, dtype=np.float64)
    model_counts = C.sum(axis=-1, dtype=np.float64)
    energy, counts_map = dask.compute(rows - 2.0 * fitted + modelled, model_counts)
    noise = counts_map if counts else np.full((ny, nx), float(m))
    excess = (energy - noise) / np.maximum(noise, 1.0)
    sigma = max(probe_px, 1.0) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    smooth = ndimage.gaussian_filter(excess, sigma, mode="nearest")
    py, px = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    yy, xx = np.mgrid[:ny, :nx]
    width = max(probe_px, 1.0)
    blob = np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2.0 * width**2))
    w = da.from_array(blob[..., None].astype(np.float32), chunks=(*C.chunks[:2], 1))
    stats = s_statistics(data, w, transform=transform)
    wc = (C * w).sum(axis=(0, 1), dtype=np.float64)
    dtw, ctw = dask.compute(stats[:m, 0], wc)
    residual = np.asarray(dtw, dtype=np.float64) - S @ np.asarray(ctw, dtype=np.float64)
    pattern = np.maximum(residual, 0.0)
    if not pattern.sum() > 0:
        pattern = np.ones(m)
    pattern /= pattern.sum()
    norm = float((blob**2).sum() * (pattern @ pattern))
    amplitude = float(residual @ pattern) / max(norm, 1e-300)
    return (max(amplitude, 0.0) * blob).astype(np.float32), pattern
