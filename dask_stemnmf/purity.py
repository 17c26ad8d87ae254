"""Crystalline components without the amorphous halo's share.

A precipitate's column holds crystal and glass, so the data at a precipitate are its
crystal pattern plus the amorphous halo. Least squares cannot tell a pure crystalline
component from one that holds a share ``a`` of the halo's pattern: mixing that share into
the crystalline diffraction ``s_p`` and taking ``a`` times the crystalline map ``c_p`` out of
the halo's map leaves ``C S^T`` unchanged, and non-negative wherever the halo's map is larger
than ``a c_p``, i.e. everywhere under a precipitate in a glass. Every fit lands on such
mixtures (README, "What limited the pattern cosine": own share 0.33-0.65 for every method).
Separating them back only needs the crystalline diffraction to stay non-negative.

Of those equally good factorisations we take the one whose crystalline diffractions hold the
least halo: for each crystalline component ``i`` and each amorphous component ``j`` (largest
map first) the share

    a_ij = quantile_q( smooth(s_i) / smooth(s_j) )   over the pixels where s_j is sizeable

(smoothed over ``smooth_px`` to average the counting noise; ``q`` a low quantile, so only a
few pixels of ``s_i - a_ij s_j`` fall below zero and are clipped), then

    s_i <- max(s_i - a_ij s_j, 0),    c_j <- c_j + a_ij c_i,

which changes ``C S^T`` only by the clipped pixels (their share is kept in the attrs). The
crystalline patterns then show their Bragg discs on a clean background, as the truth does.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .classify import component_kinds, smooth_within

__all__ = ["halo_shares", "plan_separation", "separate_halo"]


def halo_shares(
    patterns: np.ndarray,
    crystalline: np.ndarray,
    halo: np.ndarray,
    valid: np.ndarray,
    *,
    quantile: float = 0.02,
    smooth_px: float = 1.0,
    support: float = 0.1,
    keep: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the halo-free patterns and the shares taken out of them.

    Parameters
    ----------
    patterns
        ``(K, k_y, k_x)`` non-negative diffractions, each summing to 1 over ``valid``.
    crystalline, halo
        Indices of the crystalline components (purified) and of the amorphous ones (their
        patterns are taken out), the latter in the order to take them (largest map first).
    valid
        ``(k_y, k_x)`` bool, the fitted pixels.
    quantile
        The share is this quantile of the ratio over the halo's support (0: its minimum).
    smooth_px
        Gaussian smoothing (pixels) of both patterns before the ratio.
    support
        The ratio is taken where the smoothed halo exceeds this fraction of its maximum.
    keep
        At least this fraction of each crystalline pattern's sum is kept.

    Returns
    -------
    patterns : numpy.ndarray
        ``(K, k_y, k_x)``: the crystalline patterns without their halo shares (not
        renormalised), the others unchanged.
    shares : numpy.ndarray
        ``(K, K)``: ``shares[j, i]`` is the share of pattern ``j`` taken out of pattern ``i``.
    """
    out = np.array(patterns, dtype=np.float64) * valid
    k = out.shape[0]
    shares = np.zeros((k, k))
    smooth = smooth_within(out, valid, smooth_px)
    for i in crystalline:
        total = float(out[i].sum())
        for j in halo:
            sj = smooth[j]
            where = valid & (sj > support * float(sj.max())) & (sj > 0)
            if total <= 0 or not where.any():
                continue
            ratio = smooth_within(out[i][None], valid, smooth_px)[0][where] / sj[where]
            room = max(float(out[i].sum()) - keep * total, 0.0) / max(float(out[j].sum()), 1e-300)
            share = float(np.clip(np.quantile(ratio, quantile), 0.0, room))
            if share > 0:
                out[i] = np.maximum(out[i] - share * out[j], 0.0)
                shares[j, i] = share
    return out, shares


def separate_halo(result: xr.Dataset, **kw: Any) -> xr.Dataset:
    """Move the amorphous halo's share out of each crystalline component (module docstring).

    Parameters
    ----------
    result
        A decomposition with 2-D ``diffractions (component, k_y, k_x)`` (each summing to 1),
        ``maps (component, scan_y, scan_x)``, and optionally ``fit_mask`` and
        ``diffraction_sigma`` (used by :func:`dask_stemnmf.classify.component_kinds`).
    **kw
        ``quantile``, ``smooth_px``, ``support``, ``keep`` of :func:`halo_shares`.

    Returns
    -------
    xarray.Dataset
        A copy with the crystalline diffractions purified and renormalised, their maps scaled
        by the kept sum, the halo's maps raised by the shares (lazy where the maps are), the
        noise in the new scale; attrs ``halo_separation``: the shares ``[component, halo
        component, share]``, ``clipped_share`` (the share of the model's total intensity
        that the clipping removed) and ``left_mixed``: the crystalline components left as
        they were because what the separation left of them was no longer crystalline (a
        halo copy with a few significant bumps).
    """
    weight = np.asarray(result["maps"].sum(dim=("scan_y", "scan_x")).values, dtype=np.float64)
    patterns, purified, shares, lost = plan_separation(result, weight, **kw)
    out = _separated(result, patterns, purified, shares, weight)
    out.attrs["halo_separation"]["left_mixed"] = [int(i) for i in lost]
    return out


def plan_separation(
    result: xr.Dataset, weight: np.ndarray, **kw: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decide the halo shares to take out of each crystalline component.

    Parameters
    ----------
    result
        A decomposition as :func:`separate_halo` takes it (``maps`` are read only when the
        attrs lack the bright-field disc).
    weight
        ``(K,)`` each component's total map weight (the halo components are taken largest
        first).
    **kw
        ``quantile``, ``smooth_px``, ``support``, ``keep`` of :func:`halo_shares`.

    Returns
    -------
    patterns : numpy.ndarray
        ``(K, k_y, k_x)`` the diffractions as read (float64).
    purified : numpy.ndarray
        ``(K, k_y, k_x)`` the same without the shares (clipped at zero, not renormalised).
    shares : numpy.ndarray
        ``(K, K)``: ``shares[j, i]``, the share of unit-sum pattern ``j`` taken out of
        unit-sum pattern ``i``.
    left_mixed : numpy.ndarray
        Crystalline components left as they were: their remainder was no longer crystalline
        (a halo copy with a few significant bumps becomes noise).
    """
    kinds = component_kinds(result)
    valid = kinds.valid if kinds.valid is not None else np.ones(kinds.patterns.shape[1:], bool)
    crystalline = np.flatnonzero(kinds.kind == "crystalline")
    amorphous = np.flatnonzero(kinds.kind == "amorphous")
    halo = amorphous[np.argsort(-np.asarray(weight)[amorphous], kind="stable")]
    purified, shares = halo_shares(kinds.patterns, crystalline, halo, valid, **kw)
    sums = np.maximum(purified.reshape(purified.shape[0], -1).sum(axis=1), 1e-300)
    trial = result.copy()
    trial["diffractions"] = (result["diffractions"].dims, purified / sums[:, None, None])
    if "diffraction_sigma" in result.variables:  # the same noise, in the new scale
        sigma = np.asarray(result["diffraction_sigma"].values, dtype=np.float64)
        trial["diffraction_sigma"] = (result["diffraction_sigma"].dims, sigma / sums[:, None, None])
    lost = crystalline[component_kinds(trial).kind[crystalline] != "crystalline"]
    if lost.size:
        keep = np.setdiff1d(crystalline, lost)
        purified, shares = halo_shares(kinds.patterns, keep, halo, valid, **kw)
    return kinds.patterns, purified, shares, lost


def _separated(
    result: xr.Dataset, patterns: np.ndarray, purified: np.ndarray, shares: np.ndarray,
    weight: np.ndarray,
) -> xr.Dataset:  # fmt: skip
    """Return the result with ``purified`` patterns (renormalised) and their maps."""
    k = patterns.shape[0]
    maps = result["maps"].data
    # the exact change of factors: S' = S (I - E), C' = C (I + E)^T; then renormalise
    unclipped = patterns - np.tensordot(shares.T, patterns, axes=1)
    clipped = float(((purified - unclipped) * weight[:, None, None]).sum())
    sums = purified.reshape(k, -1).sum(axis=1)
    sums = np.where(sums > 0, sums, 1.0)
    transform = np.eye(k) + shares  # new map j = sum_l transform[j, l] old map l
    if isinstance(maps, da.Array):
        new_maps = da.tensordot(transform.astype(maps.dtype), maps, axes=1)
    else:
        new_maps = np.tensordot(transform, maps, axes=1).astype(maps.dtype)
    scale = sums.astype(maps.dtype)[:, None, None]
    out = result.copy()
    out["maps"] = (result["maps"].dims, new_maps * scale, result["maps"].attrs)
    out["diffractions"] = (
        result["diffractions"].dims,
        (purified / sums[:, None, None]).astype(result["diffractions"].dtype),
        result["diffractions"].attrs,
    )
    if "diffraction_sigma" in result.variables:
        # a crystalline component's map is unchanged, and so is the model C S^T: the noise
        # of its diffraction's estimate is too, in the old scale (the amorphous components'
        # maps grow a little; their noise is kept as it was)
        sigma = np.asarray(result["diffraction_sigma"].values, dtype=np.float64)
        out["diffraction_sigma"] = (
            result["diffraction_sigma"].dims,
            (sigma / sums[:, None, None]).astype(result["diffraction_sigma"].dtype),
            result["diffraction_sigma"].attrs,
        )
    total = float(weight.sum())
    out.attrs = {
        **result.attrs,
        "halo_separation": {
            "shares": [[int(i), int(j), float(shares[j, i])] for j, i in np.argwhere(shares > 0)],
            "clipped_share": clipped / total if total > 0 else 0.0,
        },
    }
    return out
