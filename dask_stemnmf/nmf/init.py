"""Initial factors: NNDSVDa from a compressed SVD, or seeded random (chunking-independent)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from .stats import NO_TRANSFORM, Transform, from_rows, to_rows

__all__ = ["nndsvda", "random_init"]


def _random_rows(
    shape: tuple[int, int, int], key: np.ndarray, block_info: dict | None = None
) -> np.ndarray:
    assert block_info is not None
    (y0, y1), (x0, x1), (_, k) = block_info[None]["array-location"]
    nx = shape[1]
    out = np.empty((y1 - y0, x1 - x0, k), dtype=np.float32)
    for y in range(y0, y1):
        rng = np.random.Generator(np.random.Philox(counter=[0, 0, 0, y], key=key))
        out[y - y0] = rng.random((nx, k), dtype=np.float32)[x0:x1]
    return out


def random_init(
    data: da.Array, k: int, mean: float, seed: int, pixels: np.ndarray | None = None
) -> tuple[da.Array, np.ndarray]:
    """Uniform random factors scaled to the data's mean, the same whatever the chunking.

    Each scan row draws from its own Philox stream, so a position's initial map values do
    not depend on the chunk that holds it.

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    k
        Number of components.
    mean
        Mean value of the data.
    seed
        Seed.
    pixels
        Indices of the fitted pixels (``M`` of them); ``None`` for all.

    Returns
    -------
    C : dask.array.Array
        ``(scan_y, scan_x, K)`` float32, chunked like the scan.
    S : numpy.ndarray
        ``(M, K)`` float64.
    """
    ss = np.random.SeedSequence(seed)
    key = ss.generate_state(2, dtype=np.uint64)
    m = int(np.prod(data.shape[2:])) if pixels is None else len(pixels)
    scale = np.sqrt(max(mean, 1e-12) / k)
    ny, nx = data.shape[:2]
    C = da.map_blocks(
        _random_rows,
        shape=(ny, nx, k),
        key=key,
        chunks=(data.chunks[0], data.chunks[1], (k,)),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    ) * np.float32(scale)
    S = np.random.default_rng(ss.spawn(1)[0]).random((m, k)) * scale
    return C, S


def nndsvda(
    data: da.Array, k: int, mean: float, seed: int, transform: Transform = NO_TRANSFORM
) -> tuple[da.Array, np.ndarray]:
    """NNDSVD with zeros filled by the data mean (Boutsidis & Gallopoulos; "nndsvda").

    The leading singular triplets come from :func:`dask.array.linalg.svd_compressed` (a few
    passes over the data); each is split into its positive and negative parts and the
    dominant part kept.

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    k
        Number of components.
    mean
        Mean value of the data.
    seed
        Seed of the randomised SVD.
    transform
        Fitted pixels and normalisation factors (the factorisation is of the transformed
        data).

    Returns
    -------
    C : dask.array.Array
        ``(scan_y, scan_x, K)`` float32 maps, chunked like the scan.
    S : numpy.ndarray
        ``(M, K)`` float64 diffractions.
    """
    rows = to_rows(data).astype(np.float32)
    if transform.pixels is not None:
        rows = rows[:, transform.pixels]
    if transform.col_scale is not None:
        rows = rows * transform.col_scale.astype(np.float32)
    if transform.row_scale is not None:
        rows = rows * to_rows(transform.row_scale[..., None].astype(np.float32))
    u, s, v = da.linalg.svd_compressed(rows, k, n_power_iter=2, seed=seed, compute=False)
    pos_norm = da.sqrt((da.maximum(u, 0) ** 2).sum(axis=0))
    neg_norm = da.sqrt((da.maximum(-u, 0) ** 2).sum(axis=0))
    s, v, pos_norm, neg_norm = dask.compute(s, v, pos_norm, neg_norm)
    v = np.asarray(v, dtype=np.float64)
    S = np.zeros((v.shape[1], k))
    columns = []
    for j in range(k):
        vp, vn = np.maximum(v[j], 0), np.maximum(-v[j], 0)
        vp_norm, vn_norm = np.linalg.norm(vp), np.linalg.norm(vn)
        mp, mn = pos_norm[j] * vp_norm, neg_norm[j] * vn_norm
        if mp >= mn:
            sign, sigma, vec, unorm = 1.0, mp, vp / max(vp_norm, 1e-300), pos_norm[j]
        else:
            sign, sigma, vec, unorm = -1.0, mn, vn / max(vn_norm, 1e-300), neg_norm[j]
        weight = np.sqrt(s[j] * sigma)
        S[:, j] = weight * vec
        columns.append((sign, weight / max(unorm, 1e-300)))
    signs = np.array([c[0] for c in columns], dtype=np.float32)
    factors = np.array([c[1] for c in columns], dtype=np.float32)
    c_rows = da.maximum(u.astype(np.float32) * signs, 0) * factors
    c_rows = da.where(c_rows == 0, np.float32(mean), c_rows)
    S[S == 0] = mean
    return from_rows(c_rows, data), S
