"""Diffraction continuity on the driver: counting noise and dip filling of all components."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .._kernels.constraints import fill_at, fill_dips, upward_peaks

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
    foreign: bool = True,
) -> tuple[np.ndarray, int]:
    """Fill every diffraction's dips deeper than ``max(threshold * peak, floor)``.

    Two fills, neither of which lowers a pixel:

    1. with ``foreign`` (2-D patterns), each diffraction's holes deeper than the same floor
       are raised to the level of its surroundings where *other* components hold upward
       peaks (their Bragg discs, found by a white top-hat of a disc twice ``radius`` across,
       above the same floor) and it has none of its own: the paper's artefact is exactly a
       hole where another component owns a spot, and a closing small enough to keep real
       valleys between close discs cannot fill a hole a whole disc wide. Measured (48 x 48
       scan, 1,500 e/pattern, soft discs): worst hole depth 0.16 -> 0.09 (truth 0.03),
       pattern / map cosine 0.83 / 0.81 -> 0.84 / 0.95. Each disc is judged whole, its
       mean depth against the floor over the square root of its pixel count (the noise of
       a mean), so a disc-wide hole shallower than one pixel's noise is still found: over
       14 scans of both generators (1,500-20,000 e/pattern) against a pixel-by-pixel test,
       the worst hole depth fell on 10 (at most 0.43 -> 0.22), pattern cosine +0.005 and
       map cosine -0.015 on average (single scans move by up to 0.13 either way);
    2. then a grey-scale closing with a disc of ``radius`` raises the narrow dips to the
       floor below it (:func:`dask_stemnmf._kernels.constraints.fill_dips`), last, so that
       no dip deeper than the floor is left whatever the first fill did.

    Masked pixels (zeros) only shape the closing; ``floor`` is ``(M, K)`` (noise per pixel).
    """
    m_full = int(np.prod(sig_shape))
    k = S.shape[1]
    images = np.zeros((k, m_full))
    levels = np.full((k, m_full), np.inf)
    for j in range(k):
        peak = float(S[:, j].max())
        if peak > 0:
            images[j, idx] = S[:, j]
            levels[j, idx] = np.maximum(threshold * peak, floor[:, j])
    total = 0
    if foreign and len(sig_shape) == 2 and k > 1:
        images, total = _fill_foreign(images, levels, idx, sig_shape, radius, fraction)
    # the closing's fill last: it leaves no dip deeper than the floor, whatever came before
    out = S.copy()
    for j in range(k):
        if not S[:, j].max() > 0:
            continue
        filled, _ = fill_dips(
            images[j].reshape(sig_shape), radius, levels[j].reshape(sig_shape), fraction
        )
        new = filled.reshape(-1)[idx]
        total += int((new > images[j, idx]).sum())
        out[:, j] = new
    return out, total


def _fill_foreign(
    images: np.ndarray,
    levels: np.ndarray,
    idx: np.ndarray,
    sig_shape: tuple[int, ...],
    radius: float,
    fraction: float,
) -> tuple[np.ndarray, int]:
    """Raise each ``(K, M_full)`` image's holes where other components hold upward peaks."""
    k, m_full = images.shape
    valid = np.zeros(m_full, dtype=bool)
    valid[idx] = True
    valid_img = valid.reshape(sig_shape)
    disc = 2.0 * radius
    grow = ndimage.generate_binary_structure(2, 1)
    peaks = np.stack([
        ndimage.binary_dilation(
            upward_peaks(images[j].reshape(sig_shape), disc, levels[j].reshape(sig_shape)),
            grow,
        )
        for j in range(k)
    ])  # fmt: skip
    anyone = peaks.sum(axis=0)
    out = images.copy()
    total = 0
    for j in range(k):
        where = ((anyone - peaks[j]) > 0) & ~peaks[j] & valid_img
        if not where.any() or images[j].max() <= 0:
            continue
        # the level comes from the surroundings without the component's own peaks
        filled, n = fill_at(
            images[j].reshape(sig_shape), where, valid_img & ~peaks[j], disc,
            np.where(valid, levels[j], np.inf).reshape(sig_shape), fraction, by_region=True,
        )  # fmt: skip
        out[j] = filled.reshape(-1)
        total += n
    return out, total
