"""The PCA baseline, shaped like the NMF result."""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..data import rechunk_scan
from ..errors import InputError
from ..schema import validate_dataset
from .stats import from_rows, to_rows
from .versions import versions

__all__ = ["pca"]


def pca(ds: xr.Dataset, n_components: int, *, random_state: int = 0) -> xr.Dataset:
    """Principal component analysis baseline, shaped like :class:`ConstrainedNMF`'s result.

    Parameters
    ----------
    ds
        A scan.
    n_components
        Number of components.
    random_state
        Seed of the randomised SVD.

    Returns
    -------
    xarray.Dataset
        ``maps (component, scan_y, scan_x)`` (scores), ``diffractions (component, *signal)``
        (unit-norm loadings, signs fixed so each sums positive), ``explained_variance
        (component)`` and ``mean`` (the mean pattern subtracted first).
    """
    sig = validate_dataset(ds)
    ds = rechunk_scan(ds, None)
    data = ds["intensity"].data
    n = ds.sizes["scan_y"] * ds.sizes["scan_x"]
    m = int(np.prod(data.shape[2:]))
    if not 1 <= n_components <= min(n, m):
        raise InputError(f"n_components must lie in 1..{min(n, m)}, got {n_components}")
    rows = to_rows(data).astype(np.float32)
    mean = rows.mean(axis=0)
    u, s, v = da.linalg.svd_compressed(
        rows - mean, n_components, n_power_iter=4, seed=random_state, compute=False
    )
    s, v, mean = dask.compute(s, v, mean)
    signs = np.where(v.sum(axis=1) < 0, -1.0, 1.0).astype(np.float32)
    v = v * signs[:, None]
    scores = from_rows(u * (s * signs).astype(np.float32), data)
    sig_shape = data.shape[2:]
    coords: dict[str, Any] = {d: ds[d] for d in ("scan_y", "scan_x", *sig)}
    coords["component"] = np.arange(n_components)
    return xr.Dataset(
        {
            "maps": (("component", "scan_y", "scan_x"), da.moveaxis(scores, -1, 0)),
            "diffractions": (("component", *sig), v.reshape((n_components, *sig_shape))),
            "explained_variance": (("component",), s**2 / max(n - 1, 1)),
            "mean": (sig, np.asarray(mean).reshape(sig_shape)),
        },
        coords=coords,
        attrs={"method": "pca", "n_components": n_components, "versions": versions()},
    )
