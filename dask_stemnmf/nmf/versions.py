"""Versions of the packages a result depends on, for its attributes."""

from __future__ import annotations

import dask
import numpy as np
import xarray as xr

from .._version import __version__

__all__ = ["versions"]


def versions() -> dict[str, str]:
    """Map each package to its version."""
    import numba
    import scipy
    import zarr

    return {
        "dask_stemnmf": __version__,
        "dask": dask.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scipy": scipy.__version__,
        "xarray": xr.__version__,
        "zarr": zarr.__version__,
    }
