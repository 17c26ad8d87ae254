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
probe-smoothed residual exceeds the model's Poisson noise most, with the residual's pattern
there (:func:`residual_seed`); the fit then goes on.

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

from .._kernels.smooth import gaussian_weights, smooth_positions
from .stats import NO_TRANSFORM, Transform, data_products, row_statistics, s_statistics

__all__ = ["coherent_excess", "duplicate_pair", "merge_columns", "residual_seed"]


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


def _smoothed(array: da.Array, weights: np.ndarray) -> da.Array:
    """``array`` smoothed over its scan axes (zeros outside the scan), chunked as it was."""
    radius = (weights.size - 1) // 2
    depth = {0: radius, 1: radius, **{axis: 0 for axis in range(2, array.ndim)}}
    out = da.map_overlap(
        smooth_positions, array, weights=weights, depth=depth, boundary="none",
        dtype=np.float32,
    )  # fmt: skip
    return out.rechunk(array.chunks)


def coherent_excess(
    data: da.Array,
    C: da.Array,
    S: np.ndarray,
    probe_px: float,
    transform: Transform = NO_TRANSFORM,
    counts: bool = True,
) -> np.ndarray:
    """Per position, how far the probe-smoothed residual exceeds its counting noise.

    A source the model lacks leaves the same residual pattern at every position under it;
    averaged over a probe-sized neighbourhood (a Gaussian of the probe's FWHM) that pattern
    adds up while the counting noise averages down, so a small precipitate stands out where
    the energy of single positions' residuals does not (measured: the missing 1.6 nm
    precipitate of a kinematic scan at 4,000 e/pattern ranked 11th among interior positions
    by single-position energy, first by this). The energy of the smoothed residual,
    ``||w * d - (w * c) S^T||^2``, comes from one pass over the smoothed data; its expected
    noise is ``w^2 *`` the model's counts (one per fitted pixel for noise-normalised data).

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    C
        ``(scan_y, scan_x, K)`` maps in the scale of ``S``.
    S
        ``(M, K)`` diffractions over the fitted pixels, each summing to 1.
    probe_px
        Probe FWHM in scan pixels: the smoothing's FWHM.
    transform
        Fitted pixels and normalisation factors of the fit.
    counts
        Whether the fitted values are counts (Poisson noise equals the model).

    Returns
    -------
    numpy.ndarray
        ``(scan_y, scan_x)`` float64: the smoothed residual's energy less its expected noise,
        over that noise (dimensionless; about 0 where the model explains the data).
    """
    ny, nx = C.shape[:2]
    m = S.shape[0]
    weights = gaussian_weights(max(probe_px, 1.0) / (2.0 * np.sqrt(2.0 * np.log(2.0))))
    scaled = data
    if transform.row_scale is not None:
        rows_shape = (*transform.row_scale.shape, *(1,) * (data.ndim - 2))
        scaled = data.astype(np.float32) * transform.row_scale.reshape(rows_shape)
    columns = Transform(transform.pixels, transform.col_scale)
    smooth_data, smooth_c = _smoothed(scaled, weights), _smoothed(C, weights)
    P = data_products(smooth_data, S, columns)
    rows = row_statistics(smooth_data, columns)[..., 1]
    g = (S.T @ S).astype(np.float32)
    fitted = (P * smooth_c).sum(axis=-1, dtype=np.float64)
    modelled = ((smooth_c @ g) * smooth_c).sum(axis=-1, dtype=np.float64)
    model_counts = C.sum(axis=-1, dtype=np.float64)
    energy, counts_map = dask.compute(rows - 2.0 * fitted + modelled, model_counts)
    per_position = counts_map if counts else np.full((ny, nx), float(m))
    noise = smooth_positions(per_position, weights**2).astype(np.float64)
    floor = float((weights**2).sum() ** 2)  # the noise of one count per position
    return (energy - noise) / np.maximum(noise, floor)


def residual_seed(
    data: da.Array,
    C: da.Array,
    S: np.ndarray,
    probe_px: float,
    transform: Transform = NO_TRANSFORM,
    counts: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Start a fresh component where the data exceed the model most: ``(map, pattern)``.

    Three passes over the data: where the probe-smoothed residual exceeds its counting noise
    most (:func:`coherent_excess`), a Gaussian blob whose standard deviation is the probe's
    FWHM (the width the README's measurements used), and the positive part of the residual's
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
    excess = coherent_excess(data, C, S, probe_px, transform, counts)
    py, px = np.unravel_index(int(np.argmax(excess)), excess.shape)
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
