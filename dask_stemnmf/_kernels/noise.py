"""Counting noise that is reproducible per scan position, whatever the chunking."""

from __future__ import annotations

import numpy as np

__all__ = ["noisy_block"]


def noisy_block(
    maps: np.ndarray,
    patterns: np.ndarray,
    positions: np.ndarray,
    key: np.ndarray,
    dark_noise: float,
    dtype: np.dtype,
) -> np.ndarray:
    """Draw counts around ``maps^T patterns``: Poisson (and dark) noise, per position.

    Each position draws from its own Philox stream (key ``key``, counter word 3 set to the
    position's linear index), so a position's noise does not depend on which chunk holds it.

    Parameters
    ----------
    maps
        ``(source, by, bx)`` float64 expected electrons per position of each source.
    patterns
        ``(source, M)`` float64 patterns, each summing to 1 over the M detector pixels.
    positions
        ``(by, bx)`` int64 linear indices of the positions in the whole scan.
    key
        ``(2,)`` uint64 Philox key derived from the seed.
    dark_noise
        Standard deviation of Gaussian detector noise in counts (0 for none); noisy values
        are rounded and clipped at zero, as a camera's offset-corrected output.
    dtype
        Output dtype: an integer type for counts, or a float type for no noise at all
        (``dtype.kind == "f"`` returns the expectation).

    Returns
    -------
    numpy.ndarray
        ``(by, bx, M)`` array of ``dtype``.
    """
    n_src, by, bx = maps.shape
    m = patterns.shape[1]
    out = np.empty((by, bx, m), dtype=dtype)
    flat_maps = maps.reshape(n_src, by * bx)
    flat_out = out.reshape(by * bx, m)
    flat_pos = positions.reshape(-1)
    pattern_t = np.ascontiguousarray(patterns.T)
    expect_only = np.dtype(dtype).kind == "f"
    for i in range(by * bx):
        lam = pattern_t @ flat_maps[:, i]
        if expect_only:
            flat_out[i] = lam
            continue
        counter = np.array([0, 0, 0, flat_pos[i]], dtype=np.uint64)
        rng = np.random.Generator(np.random.Philox(counter=counter, key=key))
        counts = rng.poisson(np.clip(lam, 0.0, None).astype(np.float32))
        if dark_noise > 0:
            noisy = counts + rng.normal(0.0, dark_noise, size=m)
            counts = np.clip(np.rint(noisy), 0, None)
        flat_out[i] = counts
    return out
