"""Direct-beam centre, sub-pixel, for a whole scan or for every pattern."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ._kernels.masks import find_bright_field_disc, pattern_centres
from .errors import InputError
from .schema import validate_dataset

__all__ = ["beam_centre"]


def _centres_block(block: np.ndarray, level: float) -> np.ndarray:
    """``(cy, cx, ky, kx)`` patterns -> ``(cy, cx, 2)`` centres (NaN for an empty pattern)."""
    cy, cx = block.shape[:2]
    return pattern_centres(block.reshape(cy * cx, *block.shape[2:]), level).reshape(cy, cx, 2)


def beam_centre(
    ds: xr.Dataset, *, per_pattern: bool = False, level: float = 0.5
) -> tuple[float, float] | xr.DataArray:
    """Find the direct-beam centre to sub-pixel accuracy.

    The bright-field disc is the connected region above ``level`` of the maximum that holds
    the maximum; its centre is the intensity-weighted centroid.

    Parameters
    ----------
    ds
        A scan (``intensity (scan_y, scan_x, k_y, k_x)``).
    per_pattern
        ``False``: one centre from the mean pattern (one pass over the data). ``True``: a
        lazy ``(scan_y, scan_x, 2)`` array of every pattern's own centre (for descan), one
        task per chunk.
    level
        Threshold as a fraction of the maximum.

    Returns
    -------
    tuple of float or xarray.DataArray
        ``(y, x)`` in detector pixels, or the lazy ``(scan_y, scan_x, yx)`` DataArray.
    """
    sig = validate_dataset(ds)
    if len(sig) != 2:
        raise InputError("beam_centre needs 2-D diffraction patterns (k_y, k_x)")
    if not 0 < level < 1:
        raise InputError(f"level must lie between 0 and 1, got {level}")
    data = ds["intensity"].data
    if not per_pattern:
        mean = np.asarray(data.mean(axis=(0, 1), dtype=np.float64).compute())
        try:
            cy, cx, _ = find_bright_field_disc(mean, level)
        except ValueError as err:
            raise InputError(f"{err}; check the scan") from err
        return cy, cx
    data = data.rechunk({2: -1, 3: -1})
    centres = da.map_blocks(
        _centres_block, data, level, dtype=np.float64, drop_axis=3,
        chunks=(data.chunks[0], data.chunks[1], (2,)), name="beam-centre-per-pattern",
    )  # fmt: skip
    return xr.DataArray(
        centres,
        dims=("scan_y", "scan_x", "yx"),
        coords={"scan_y": ds["scan_y"], "scan_x": ds["scan_x"], "yx": ["y", "x"]},
        attrs={"units": "px"},
    )
