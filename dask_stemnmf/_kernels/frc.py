"""Dose-limited resolution: binomial thinning of counts and the Fourier ring correlation.

Counts ``n ~ Poisson(lambda)`` split by ``a ~ Binomial(n, 1/2)``, ``b = n - a`` give two
independent ``Poisson(lambda / 2)`` halves (exact: thinning a Poisson process). Images made
the same way from each half share the signal and not the noise, so their Fourier ring
correlation (FRC) falls from 1 where the signal dominates to 0 where the noise does; the
frequency where it crosses a threshold is the finest detail the dose supports.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn

__all__ = [
    "BASIS_SHARE",
    "fourier_ring_correlation",
    "frc_crossing",
    "thinned_split",
    "thinning_key",
    "to_half_dose",
]


def thinning_key(seed: int) -> np.ndarray:
    """Return the Philox key of the thinning for a seed (two uint64)."""
    return np.random.SeedSequence([seed, 0x7A1F]).generate_state(2, dtype=np.uint64)


#: Share of the counts that makes the basis the two halves are projected on; each half gets
#: ``(1 - BASIS_SHARE) / 2``. A basis fitted to the same counts as the halves would carry
#: their noise into both (a noise-fitted component's two maps then correlate at 0.5 at every
#: frequency), so it is made from counts of its own. Half of them: a basis from a fifth of
#: the counts was too noisy a filter at 1,500 e/pattern (only the mean's map correlated).
BASIS_SHARE = 0.5


def thinned_split(
    counts: np.ndarray, positions: np.ndarray, key: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split integer counts into three independent parts: a basis share and two halves.

    ``c ~ Binomial(n, BASIS_SHARE)``, ``a ~ Binomial(n - c, 1/2)``, ``b = n - c - a``: for
    Poisson counts the three are independent Poisson variables (thinning is exact). Position
    ``p`` draws from its own Philox stream (counter ``p``), so a position's parts do not
    depend on the chunk that holds it.

    Parameters
    ----------
    counts
        ``(P, M)`` non-negative counts (any real dtype holding whole numbers).
    positions
        ``(P,)`` flat scan index of each row.
    key
        Philox key (:func:`thinning_key`).

    Returns
    -------
    a, b, c : numpy.ndarray
        ``(P, M)`` float32, ``a + b + c == counts``.
    """
    n = np.rint(np.maximum(counts, 0)).astype(np.int64)
    a = np.empty(n.shape, dtype=np.float32)
    c = np.empty(n.shape, dtype=np.float32)
    for i, p in enumerate(np.asarray(positions, dtype=np.uint64)):
        rng = np.random.Generator(np.random.Philox(counter=[0, 0, 0, int(p)], key=key))
        ci = rng.binomial(n[i], BASIS_SHARE)
        c[i] = ci
        a[i] = rng.binomial(n[i] - ci, 0.5)
    return a, n.astype(np.float32) - a - c, c


def to_half_dose(frc: np.ndarray) -> np.ndarray:
    """Convert an FRC of halves of ``1 - BASIS_SHARE`` of the counts to halves of all.

    ``FRC = SNR / (1 + SNR)`` per ring, and the SNR of an image grows in proportion to its
    counts: scale the SNR by ``0.5 / ((1 - BASIS_SHARE) / 2)``.
    """
    frc = np.clip(np.asarray(frc, dtype=np.float64), -0.999, 0.999)
    snr = frc / (1.0 - frc) / (1.0 - BASIS_SHARE)
    return snr / (1.0 + snr)


def fourier_ring_correlation(
    a: np.ndarray, b: np.ndarray, ring_width: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fourier ring correlation of pairs of images, in the DCT-II domain.

    The DCT's mirror extension has no jump at the image edges (a periodic FFT's would
    correlate the two halves at every frequency), and it is the domain in which the map
    constraint is imposed. Coefficient ``(u, v)`` of an ``(ny, nx)`` image has frequency
    ``sqrt((u / 2 ny)^2 + (v / 2 nx)^2)`` cycles per pixel.

    Parameters
    ----------
    a, b
        ``(K, ny, nx)`` images from the two halves (image ``k`` of ``a`` with image ``k`` of
        ``b``).
    ring_width
        Ring width in cycles per pixel; default ``1 / max(ny, nx)`` (two DCT bins).

    Returns
    -------
    freq : numpy.ndarray
        ``(R,)`` ring centres in cycles per pixel (the mean pixel's frequency, 0 excluded).
    frc : numpy.ndarray
        ``(K, R)`` correlation of each pair of images per ring (0 where a ring is empty).
    n_coeffs : numpy.ndarray
        ``(R,)`` coefficients per ring.
    pooled : numpy.ndarray
        ``(R,)`` the FRC of all pairs together: ring products and powers summed over the
        ``K`` pairs before the ratio, so each pair weighs by its power.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ny, nx = a.shape[-2:]
    fa = dctn(a, type=2, norm="ortho", axes=(-2, -1))
    fb = dctn(b, type=2, norm="ortho", axes=(-2, -1))
    fy = np.arange(ny)[:, None] / (2.0 * ny)
    fx = np.arange(nx)[None, :] / (2.0 * nx)
    f = np.hypot(fy, fx)
    width = ring_width or 1.0 / max(ny, nx)
    ring = (f / width).astype(np.int64)
    ring[0, 0] = -1  # the mean is not a frequency of detail
    n_rings = int(ring.max()) + 1
    inside = ring >= 0
    idx = ring[inside]
    n = np.bincount(idx, minlength=n_rings)
    fsum = np.bincount(idx, weights=f[inside], minlength=n_rings)
    k = a.shape[0]
    sums = np.zeros((3, k, n_rings))
    for j in range(k):
        for i, product in enumerate((fa[j] * fb[j], fa[j] ** 2, fb[j] ** 2)):
            sums[i, j] = np.bincount(idx, weights=product[inside], minlength=n_rings)
    keep = n > 0
    frc = _ratio(*sums)
    pooled = _ratio(*sums.sum(axis=1))
    return fsum[keep] / n[keep], frc[..., keep], n[keep], pooled[keep]


def _ratio(ab: np.ndarray, aa: np.ndarray, bb: np.ndarray) -> np.ndarray:
    denom = np.sqrt(aa * bb)
    return np.where(denom > 0, ab / np.where(denom > 0, denom, 1.0), 0.0)


def frc_crossing(
    freq: np.ndarray, frc: np.ndarray, n_coeffs: np.ndarray, threshold: str | float = "1/7"
) -> float:
    """Return the frequency where an FRC curve first falls below a threshold.

    Parameters
    ----------
    freq
        ``(R,)`` ring frequencies, cycles per pixel.
    frc
        ``(R,)`` correlation per ring.
    n_coeffs
        ``(R,)`` coefficients per ring (for the half-bit threshold).
    threshold
        ``"1/7"`` (a fixed 0.143), ``"half-bit"`` (van Heel & Schatz 2005: a curve that
        falls with the number of coefficients in the ring), or a number.

    Returns
    -------
    float
        Cycles per pixel, linearly interpolated between the rings about the crossing; the
        highest ring frequency when the curve never falls below it.
    """
    if threshold == "half-bit":
        root = 1.0 / np.sqrt(np.maximum(n_coeffs, 1))
        level = (0.2071 + 1.9102 * root) / (1.2071 + 0.9102 * root)
    elif threshold == "1/7":
        level = np.full(freq.shape, 1.0 / 7.0)
    else:
        level = np.full(freq.shape, float(threshold))
    below = np.flatnonzero(frc < level)
    if below.size == 0:
        return float(freq[-1])
    i = int(below[0])
    if i == 0:
        return float(freq[0])
    # interpolate between ring i - 1 (above) and ring i (below)
    x0, x1 = freq[i - 1], freq[i]
    d0, d1 = frc[i - 1] - level[i - 1], frc[i] - level[i]
    return float(x0 + (x1 - x0) * d0 / (d0 - d1))
