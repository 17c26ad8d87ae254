"""Initial factors: NNDSVDa from an accurate SVD, or seeded random (chunking-independent).

The leading singular subspace of the fitted matrix comes from its Gram matrix ``D^T D`` in
one pass when the detector is moderate (exact), else from a randomised SVD with enough power
iterations (each re-orthonormalised: raw powers of large counts overflow float32) and
oversampling to be as good. A second pass projects the data on it (``D V``: the left
singular vectors). When the dose-limited resolution is wanted, both passes also split the
counts by binomial thinning into a basis share and two halves (the same split in each pass,
drawn per position): the first pass adds the basis share's Gram matrix, the second projects
the two halves on its leading vectors, and their Fourier ring correlation gives the
resolution (:mod:`dask_stemnmf.nmf.resolution`). The split is drawn again in each pass
rather than stored: it costs one more draw per value, not a copy of the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from dask.base import tokenize

from .._kernels.frc import thinned_split, thinning_key
from .stats import NO_TRANSFORM, Transform, _one, _sig_index, _transform_rows, to_rows

__all__ = ["GRAM_MAX_PIXELS", "Subspace", "leading_subspace", "nndsvda", "random_init"]

#: The Gram matrix ``D^T D`` is used for the SVD up to this many fitted pixels (a float64
#: ``M x M`` partial per task: 128 MiB at 4,096); beyond, a randomised SVD.
GRAM_MAX_PIXELS = 4096
#: Power iterations and oversampling of the randomised SVD: measured on low-dose scans, two
#: power iterations started the fit in a worse basin than the exact SVD; six match it.
POWER_ITERATIONS = 6
OVERSAMPLES = 20


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


@dataclass
class Subspace:
    """The leading singular subspace of the fitted matrix, and the data projected on it.

    Attributes
    ----------
    s
        ``(K,)`` singular values, descending.
    v
        ``(M, K)`` right singular vectors (diffraction-like), orthonormal columns.
    projected
        ``(scan_y, scan_x, H, K)`` float64, chunked like the scan and persisted: ``D V``
        (``H = 1``), and for counts also the two thinned halves projected on the basis of
        the third, independent share (``H = 3``: ``D V``, ``A V_c``, ``B V_c``).
    method
        ``"gram"`` (exact) or ``"randomised"``.
    """

    s: np.ndarray
    v: np.ndarray
    projected: da.Array
    method: str

    @property
    def thinned(self) -> bool:
        """Whether the halves of the counts were projected too."""
        return self.projected.shape[2] == 3

    def projection(self) -> da.Array:
        """``D V`` as ``(scan_y, scan_x, K)``."""
        return self.projected[:, :, 0]

    def halves(self) -> da.Array:
        """``(scan_y, scan_x, 2, K)``: the two halves' maps, on an independent basis."""
        return self.projected[:, :, 1:]


def _parts(
    flat: np.ndarray, positions: Any, key: np.ndarray | None
) -> tuple[np.ndarray, ...]:
    """Return the data rows, then (for counts) the halves ``a, b`` and the basis share ``c``."""
    if key is None:
        return (flat,)
    return (flat, *thinned_split(flat, _one(positions).reshape(-1), key))


def _gram_chunk(
    block: Any, positions: Any, cols: Any, rows: Any, *, key: np.ndarray | None
) -> np.ndarray:
    raw = _one(block)
    flat = raw.reshape(raw.shape[0] * raw.shape[1], -1)
    factor = None if rows is None else _one(rows).reshape(-1)
    parts = _parts(flat, positions, key)
    out = []
    for part in (parts[0], parts[-1]) if key is not None else parts:
        d = _transform_rows(part, cols, factor)
        out.append((d.T @ d).astype(np.float64))
    return np.stack(out)[None, None]


def _positions(data: da.Array) -> da.Array:
    ny, nx = data.shape[:2]
    return da.arange(ny * nx, chunks=ny * nx).reshape(ny, nx).rechunk(data.chunks[:2])


def _gram(data: da.Array, transform: Transform, key: np.ndarray | None) -> da.Array:
    """``D^T D`` (and the basis share's ``C^T C``), ``(G, M, M)`` float64, tree-reduced."""
    sig = _sig_index(data)
    m = int(np.prod(data.shape[2:])) if transform.pixels is None else transform.pixels.size
    partial = da.blockwise(
        _gram_chunk, "yxgpq", data, "yx" + sig, _positions(data), "yx", *transform.args(),
        new_axes={"g": 1 if key is None else 2, "p": m, "q": m}, dtype=np.float64,
        concatenate=False, adjust_chunks={"y": 1, "x": 1}, key=key,
        name=f"nmf-init-gram-{tokenize(data, transform.token(), key)}",
    )  # fmt: skip
    return partial.sum(axis=(0, 1), split_every=4)


def _project_chunk(
    block: Any, positions: Any, cols: Any, rows: Any, v: Any, *, key: np.ndarray | None
) -> np.ndarray:
    raw = _one(block)
    where = _one(positions)
    flat = raw.reshape(raw.shape[0] * raw.shape[1], -1)
    factor = None if rows is None else _one(rows).reshape(-1)
    bases = _one(v).astype(np.float32)  # (G, M, K): the data's, then the basis share's
    parts = _parts(flat, positions, key)
    k = bases.shape[2]
    pairs = [(parts[0], bases[0])]
    if key is not None:
        pairs += [(parts[1], bases[1]), (parts[2], bases[1])]
    out = np.empty((*where.shape, len(pairs), k), dtype=np.float64)
    for i, (part, basis) in enumerate(pairs):
        out[:, :, i] = (_transform_rows(part, cols, factor) @ basis).reshape(*where.shape, k)
    return out


def _project(data: da.Array, bases: np.ndarray, transform: Transform, key: Any) -> da.Array:
    """``(scan_y, scan_x, H, K)``: ``D V`` and, for counts, ``A V_c`` and ``B V_c``."""
    sig = _sig_index(data)
    v_arr = da.from_array(
        bases.astype(np.float32), chunks=bases.shape, name=f"nmf-init-v-{tokenize(bases)}"
    )
    return da.blockwise(
        _project_chunk, "yxhk", data, "yx" + sig, _positions(data), "yx", *transform.args(),
        v_arr, "gmk", new_axes={"h": 1 if key is None else 3}, dtype=np.float64,
        concatenate=False, key=key,
        name=f"nmf-init-project-{tokenize(data, bases, transform.token(), key)}",
    )  # fmt: skip


def _leading(gram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Leading ``k`` singular values and right vectors from a Gram matrix.

    Only the ``k`` largest eigenpairs are computed, by Lanczos iterations (ARPACK) when
    ``k`` is small next to ``M``: a dense eigendecomposition of a 4,096-pixel Gram matrix (5 s
    on one core, its tridiagonal reduction alone) took longer than the whole fit.
    """
    m = gram.shape[0]
    if m <= 512 or 4 * k >= m:
        values, vectors = scipy.linalg.eigh(gram, subset_by_index=[max(m - k, 0), m - 1])
    else:
        start = np.full(m, 1.0 / np.sqrt(m))  # deterministic
        values, vectors = scipy.sparse.linalg.eigsh(gram, k=k, which="LA", v0=start, tol=1e-10)
    order = np.argsort(values)[::-1][:k]
    return np.sqrt(np.maximum(values[order], 0.0)), vectors[:, order]


def _randomised(
    data: da.Array, k: int, seed: int, transform: Transform, part: int, key: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Randomised SVD of the fitted matrix (``part`` 0) or of its basis share (``part`` 3)."""
    if part:
        sig = _sig_index(data)
        data = da.blockwise(
            _share_chunk, "yx" + sig, data, "yx" + sig, _positions(data), "yx",
            dtype=np.float32, concatenate=False, key=key, part=part,
        )  # fmt: skip
    rows = to_rows(data).astype(np.float32)
    if transform.pixels is not None:
        rows = rows[:, transform.pixels]
    if transform.col_scale is not None:
        rows = rows * transform.col_scale.astype(np.float32)
    if transform.row_scale is not None:
        rows = rows * to_rows(transform.row_scale[..., None].astype(np.float32))
    _, s_da, vt = da.linalg.svd_compressed(
        rows, k, iterator="QR", n_power_iter=POWER_ITERATIONS,
        n_oversamples=max(OVERSAMPLES, k),
        seed=seed, compute=False,
    )  # fmt: skip
    s, vt = dask.compute(s_da, vt)
    return np.asarray(s, dtype=np.float64), np.asarray(vt, dtype=np.float64).T


def _share_chunk(block: Any, positions: Any, *, key: np.ndarray, part: int) -> np.ndarray:
    """One part of a chunk's thinned split, shaped like the chunk."""
    raw = _one(block)
    flat = raw.reshape(raw.shape[0] * raw.shape[1], -1)
    return _parts(flat, positions, key)[part].reshape(raw.shape)


def _fix_signs(v: np.ndarray) -> np.ndarray:
    """Make each column's largest entry positive (deterministic signs)."""
    signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    return v * np.where(signs == 0, 1.0, signs)


def leading_subspace(
    data: da.Array, k: int, seed: int, transform: Transform = NO_TRANSFORM, counts: bool = True
) -> Subspace:
    """Compute the ``k`` leading singular triplets of the fitted matrix, and the projections.

    Parameters
    ----------
    data
        ``(scan_y, scan_x, *signal)`` scan.
    k
        Number of components.
    seed
        Seed of the randomised SVD and of the thinning.
    transform
        Fitted pixels and normalisation factors (the SVD is of the transformed data).
    counts
        Whether the data hold integer counts: then the passes also split them into two
        halves and a basis share (:func:`dask_stemnmf._kernels.frc.thinned_split`) for the
        dose-limited resolution.

    Returns
    -------
    Subspace
        Two passes over the data (Gram, projection) when ``M <= GRAM_MAX_PIXELS``, else
        the randomised SVD's passes (twice for counts) and the projection.
    """
    m = int(np.prod(data.shape[2:])) if transform.pixels is None else transform.pixels.size
    key = thinning_key(seed) if counts else None
    if m <= GRAM_MAX_PIXELS:
        grams = np.asarray(_gram(data, transform, key).compute(), dtype=np.float64)
        s, v = _leading(grams[0], k)
        bases = [v] + ([_leading(grams[1], k)[1]] if key is not None else [])
        method = "gram"
    else:
        s, v = _randomised(data, k, seed, transform, 0, key)
        bases = [v]
        if key is not None:
            bases.append(_randomised(data, k, seed, transform, 3, key)[1])
        method = "randomised"
    bases = [_fix_signs(b) for b in bases]
    projected = _project(data, np.stack(bases), transform, key).persist()
    return Subspace(s, bases[0], projected, method)


def nndsvda(subspace: Subspace, mean: float) -> tuple[da.Array, np.ndarray]:
    """NNDSVD with zeros filled by the data mean (Boutsidis & Gallopoulos; "nndsvda").

    Each singular triplet ``(u_j, s_j, v_j)`` is split into its positive and negative parts
    and the dominant part kept.

    Parameters
    ----------
    subspace
        The leading singular subspace (:func:`leading_subspace`).
    mean
        Mean value of the data (fills the zeros).

    Returns
    -------
    C : dask.array.Array
        ``(scan_y, scan_x, K)`` float32 maps, chunked like the scan.
    S : numpy.ndarray
        ``(M, K)`` float64 diffractions.
    """
    s, v = subspace.s, subspace.v
    u = subspace.projection() / np.where(s > 0, s, 1.0)  # (scan_y, scan_x, K)
    pos_norm, neg_norm = dask.compute(
        da.sqrt((da.maximum(u, 0) ** 2).sum(axis=(0, 1))),
        da.sqrt((da.maximum(-u, 0) ** 2).sum(axis=(0, 1))),
    )
    k = s.size
    S = np.zeros((v.shape[0], k))
    signs = np.ones(k, dtype=np.float32)
    factors = np.zeros(k, dtype=np.float32)
    for j in range(k):
        vp, vn = np.maximum(v[:, j], 0), np.maximum(-v[:, j], 0)
        vp_norm, vn_norm = np.linalg.norm(vp), np.linalg.norm(vn)
        mp, mn = pos_norm[j] * vp_norm, neg_norm[j] * vn_norm
        if mp >= mn:
            sigma, vec, unorm = mp, vp / max(vp_norm, 1e-300), pos_norm[j]
        else:
            sigma, vec, unorm = mn, vn / max(vn_norm, 1e-300), neg_norm[j]
            signs[j] = -1.0
        weight = np.sqrt(s[j] * sigma)
        S[:, j] = weight * vec
        factors[j] = weight / max(unorm, 1e-300)
    c = da.maximum(u.astype(np.float32) * signs, 0) * factors
    c = da.where(c == 0, np.float32(mean), c)
    S[S == 0] = mean
    return c, S
