"""The dose-limited resolution of the maps, from two binomially thinned halves of the counts.

The maps of the leading singular components, made once from each half (the projection pass
of :func:`dask_stemnmf.nmf.init.leading_subspace`), share their signal and not their noise.
Their Fourier ring correlation (FRC) falls below a threshold at the finest period the dose
supports; the map constraint then uses the coarser of that and the probe's limit.
"""

from __future__ import annotations

import numpy as np

from .._kernels.frc import fourier_ring_correlation, frc_crossing, to_half_dose
from .init import Subspace

__all__ = ["dose_limited_cutoff", "frc_curves"]


def frc_curves(subspace: Subspace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FRC of the two halves' maps of every leading component but the first.

    The first singular component is the mean pattern: its map (the thickness, the total
    scattering) has far more signal than any component's contrast, so it would set a
    resolution no component map reaches.

    Parameters
    ----------
    subspace
        From :func:`dask_stemnmf.nmf.init.leading_subspace`, with thinned halves.

    Returns
    -------
    freq : numpy.ndarray
        ``(R,)`` ring frequencies, cycles per scan pixel.
    frc : numpy.ndarray
        ``(R,)`` the FRC of all the component maps together (sums over the components of the
        ring products and powers, so each component weighs by its contrast).
    per_component : numpy.ndarray
        ``(K - 1, R)`` each component's own FRC.
    n_coeffs : numpy.ndarray
        ``(R,)`` DCT coefficients per ring.
    """
    halves = np.asarray(subspace.halves().compute(), dtype=np.float64)
    k = halves.shape[-1]
    first = 1 if k > 1 else 0
    a = np.moveaxis(halves[:, :, 0, first:], -1, 0)
    b = np.moveaxis(halves[:, :, 1, first:], -1, 0)
    a = a - a.mean(axis=(1, 2), keepdims=True)
    b = b - b.mean(axis=(1, 2), keepdims=True)
    freq, per_component, n, pooled = fourier_ring_correlation(a, b)
    return freq, to_half_dose(pooled), to_half_dose(per_component), n


def dose_limited_cutoff(
    subspace: Subspace, threshold: str | float = "1/7"
) -> dict[str, float | list[float]]:
    """Measure the highest spatial frequency the maps' signal supports at this dose.

    Parameters
    ----------
    subspace
        With thinned halves (:attr:`Subspace.thinned`).
    threshold
        FRC threshold: ``"1/7"``, ``"half-bit"`` or a number.

    Returns
    -------
    dict
        ``cutoff_cycles_per_px`` (pooled FRC's crossing), ``per_component_cycles_per_px``,
        ``threshold``.
    """
    freq, pooled, per_component, n = frc_curves(subspace)
    cutoff = frc_crossing(freq, pooled, n, threshold)
    each = [frc_crossing(freq, c, n, threshold) for c in per_component]
    return {
        "cutoff_cycles_per_px": cutoff,
        "per_component_cycles_per_px": each,
        "threshold": str(threshold),
    }
