"""The labelled data model: dimension names, required attributes and validation.

A scan is an :class:`xarray.Dataset` whose variable ``intensity`` has dims
``("scan_y", "scan_x", "k_y", "k_x")`` (4D-STEM) or ``("scan_y", "scan_x", "energy")``
(spectrum image). See ``DESIGN.md`` section 3.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from .errors import InputError

__all__ = [
    "CALIBRATION_ATTRS",
    "DIFFRACTION_DIMS",
    "DIMS_4D",
    "DIMS_SPECTRUM",
    "SCAN_DIMS",
    "SCHEMA_VERSION",
    "check_dtype",
    "signal_dims",
    "validate_dataset",
]

#: Version of the on-disk layout written by this package.
SCHEMA_VERSION = 1
SCAN_DIMS: tuple[str, str] = ("scan_y", "scan_x")
DIFFRACTION_DIMS: tuple[str, str] = ("k_y", "k_x")
SPECTRUM_DIMS: tuple[str] = ("energy",)
DIMS_4D = SCAN_DIMS + DIFFRACTION_DIMS
DIMS_SPECTRUM = SCAN_DIMS + SPECTRUM_DIMS
#: Attributes every scan carries; NaN means "unknown" and is allowed.
CALIBRATION_ATTRS: tuple[str, ...] = (
    "beam_energy_kev",
    "convergence_semiangle_mrad",
    "scan_step_nm",
)


def check_dtype(dtype: np.dtype, what: str = "intensity") -> None:
    """Refuse dtypes that are not real numbers (bool, complex, strings, objects).

    Parameters
    ----------
    dtype
        The dtype to check.
    what
        How to name the array in the error message.

    Raises
    ------
    InputError
        If ``dtype`` is not an integer or floating-point type.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iuf":
        raise InputError(
            f"{what} has dtype {dtype}, which is not a real number type; "
            "convert it to integer counts or float32 before use"
        )


def signal_dims(dims: tuple[Hashable, ...]) -> tuple[str, ...]:
    """Return the signal dims of ``intensity`` dims: ``(k_y, k_x)`` or ``(energy,)``.

    Raises
    ------
    InputError
        If ``dims`` is neither the 4D-STEM nor the spectrum-image layout.
    """
    if tuple(dims) == DIMS_4D:
        return DIFFRACTION_DIMS
    if tuple(dims) == DIMS_SPECTRUM:
        return SPECTRUM_DIMS
    raise InputError(
        f"intensity has dims {tuple(dims)}; expected {DIMS_4D} (4D-STEM) or {DIMS_SPECTRUM} "
        "(spectrum image): convert the data with `stemnmf convert`"
    )


def _check_attrs(attrs: Mapping[Hashable, Any]) -> None:
    version = attrs.get("schema_version")
    if version is not None and int(version) > SCHEMA_VERSION:
        raise InputError(
            f"store has schema_version {version}, newer than this dask_stemnmf understands "
            f"({SCHEMA_VERSION}): upgrade dask_stemnmf"
        )
    for name in CALIBRATION_ATTRS:
        if name not in attrs:
            raise InputError(
                f"attribute {name!r} is missing; set it (NaN if unknown), e.g. "
                f"ds.attrs[{name!r}] = float('nan'), or re-convert with `stemnmf convert`"
            )
        value = attrs[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"attribute {name!r} is {value!r}, not a number") from None
        if not math.isnan(number) and number <= 0:
            raise InputError(f"attribute {name!r} is {number}; it must be positive (or NaN)")


def validate_dataset(ds: xr.Dataset) -> tuple[str, ...]:
    """Check that ``ds`` follows the data model; return the signal dims.

    Checks the dims, dtype, coordinates (one per dim, with a ``units`` attribute), the
    calibration attributes, the schema version and the optional ``detector_mask``. Values are
    not read (see :func:`dask_stemnmf.values.value_report` for NaN/Inf/negative counts).

    Parameters
    ----------
    ds
        The scan to check.

    Returns
    -------
    tuple of str
        ``("k_y", "k_x")`` for 4D-STEM, ``("energy",)`` for a spectrum image.

    Raises
    ------
    InputError
        Naming the first problem found and how to fix it.
    """
    if "intensity" not in ds.data_vars:
        raise InputError(
            "dataset has no variable 'intensity'; it is not a dask_stemnmf scan: "
            "convert the data with `stemnmf convert`"
        )
    intensity = ds["intensity"]
    sig = signal_dims(intensity.dims)
    check_dtype(intensity.dtype)
    for dim, size in zip(intensity.dims, intensity.shape, strict=True):
        if size < 1:
            raise InputError(f"intensity has an empty dimension {dim!r}")
        if dim not in ds.coords:
            raise InputError(f"coordinate {dim!r} is missing; add it with its 'units' attribute")
        if "units" not in ds[dim].attrs:
            raise InputError(f"coordinate {dim!r} has no 'units' attribute; add one")
    _check_attrs(ds.attrs)
    if "detector_mask" in ds.variables:
        mask = ds["detector_mask"]
        if mask.dims != sig or mask.dtype != bool:
            raise InputError(
                f"detector_mask has dims {mask.dims} and dtype {mask.dtype}; "
                f"it must be bool with dims {sig}"
            )
    return sig
