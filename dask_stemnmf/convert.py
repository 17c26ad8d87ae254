"""Ingestion: stream a scan from another format into the dask_stemnmf zarr layout.

Units are converted into the data model's: scan coordinates in nm, reciprocal coordinates in
1/nm (or mrad for angular calibrations), energies in eV. A calibration the file lacks (or
states in units we cannot interpret) becomes pixel indices with units ``"px"`` and a note;
command-line values override the file's.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._fsutil import check_output_path
from ._version import __version__
from .data import ChunksArg, _scan_chunks_arg, open_4dstem, write_scan
from .errors import InputError, StemNMFWarning
from .readers import RSCIIO_FORMATS, Axis, RawScan, read_raw
from .schema import DIMS_4D, DIMS_SPECTRUM, SCHEMA_VERSION
from .values import ValueReport, needs_value_pass, unchecked_report, value_report_from, value_stats

__all__ = ["Calibration", "ConvertResult", "convert", "dataset_from_raw", "value_notes"]

_LENGTH_NM = {"nm": 1.0, "um": 1e3, "µm": 1e3, "μm": 1e3, "a": 0.1, "pm": 1e-3, "m": 1e9, "mm": 1e6}
_INV_LENGTH = {"1/nm": 1.0, "1/a": 10.0, "1/pm": 1e3, "1/m": 1e-9, "1/um": 1e-3}
_ANGLE_MRAD = {"mrad": 1.0, "mrads": 1.0, "rad": 1e3, "radian": 1e3, "radians": 1e3, "angle": 1e3}
_ENERGY_EV = {"ev": 1.0, "kev": 1e3}


def value_notes(report: ValueReport) -> list[str]:
    """One line per finding of a value pass: NaN/Inf (refused by the fit), negative values.

    Negative values (background-subtracted data) are not a fault: the fit clips them to 0 by
    default (``negative="clip"``, or ``"offset"``, or ``"refuse"``).

    Parameters
    ----------
    report
        The value pass's report.

    Returns
    -------
    list of str
        The notes (empty when nothing was found).
    """
    lines = [line for line in report.problems() if "NaN" in line]
    if report.n_negative:
        lines.append(
            f"{report.n_negative} negative values (min {report.minimum:g}), as after a "
            "background subtraction; the fit clips them to 0 by default (job file "
            "nmf.negative or `stemnmf run --negative offset|refuse` to choose otherwise)"
        )
    return lines


def _normalise_units(units: str) -> str:
    u = units.strip().lower().replace(" ", "").replace("å", "a").replace("angstrom", "a")
    u = re.sub(r"^(\w+)\^-1$", r"1/\1", u)
    u = re.sub(r"^(\w+)-1$", r"1/\1", u)
    return u


@dataclass(frozen=True)
class Calibration:
    """User-supplied calibrations; ``None`` keeps what the file says.

    Attributes
    ----------
    scan_step_nm
        Scan step in nm.
    k_step
        Detector pixel size, in ``k_units``.
    k_units
        ``"1/nm"`` or ``"mrad"``.
    energy_step_ev, energy_offset_ev
        Energy axis of a spectrum image, in eV.
    beam_energy_kev, convergence_semiangle_mrad
        Beam energy (keV) and probe convergence semi-angle (mrad).
    """

    scan_step_nm: float | None = None
    k_step: float | None = None
    k_units: str = "1/nm"
    energy_step_ev: float | None = None
    energy_offset_ev: float = 0.0
    beam_energy_kev: float | None = None
    convergence_semiangle_mrad: float | None = None


@dataclass
class ConvertResult:
    """What a conversion did.

    Attributes
    ----------
    output
        The store written.
    values
        NaN/Inf/negative report of the data (from the same pass as the write).
    notes
        Calibrations that are missing or were not understood.
    """

    output: Path
    values: ValueReport
    notes: list[str] = field(default_factory=list)


def _axis_coord(
    axis: Axis, size: int, table: Mapping[str, float], unit: str
) -> tuple[np.ndarray, str, float] | None:
    factor = table.get(_normalise_units(axis.units))
    if factor is None or not axis.scale:
        return None
    step = axis.scale * factor
    return axis.offset * factor + step * np.arange(size), unit, step


def _k_coord(axis: Axis, size: int) -> tuple[np.ndarray, str, float] | None:
    return _axis_coord(axis, size, _INV_LENGTH, "1/nm") or _axis_coord(
        axis, size, _ANGLE_MRAD, "mrad"
    )


def dataset_from_raw(
    raw: RawScan, calibration: Calibration | None = None
) -> tuple[xr.Dataset, list[str]]:
    """Label a :class:`~dask_stemnmf.readers.RawScan` as a data-model dataset.

    Parameters
    ----------
    raw
        Lazy data and file calibrations.
    calibration
        Values that override the file's.

    Returns
    -------
    dataset : xarray.Dataset
        Lazy scan following ``DESIGN.md`` section 3.
    notes : list of str
        One line per calibration that is unknown (stored as pixels or NaN).
    """
    cal = calibration or Calibration()
    data = raw.data
    dims = DIMS_4D if data.ndim == 4 else DIMS_SPECTRUM
    notes: list[str] = []
    coords: dict[str, Any] = {}
    steps: dict[str, float] = {}
    for dim, axis, size in zip(dims, raw.axes, data.shape, strict=True):
        if dim.startswith("scan"):
            override = cal.scan_step_nm
            found = _axis_coord(axis, size, _LENGTH_NM, "nm")
            flag = "--scan-step NM"
        elif dim == "energy":
            override = cal.energy_step_ev
            found = _axis_coord(axis, size, _ENERGY_EV, "eV")
            flag = "--energy-step EV"
        else:
            override = cal.k_step
            found = _k_coord(axis, size)
            flag = "--k-step VALUE --k-units 1/nm|mrad"
        if override is not None:
            unit = {"scan_y": "nm", "scan_x": "nm", "energy": "eV"}.get(dim, cal.k_units)
            offset = cal.energy_offset_ev if dim == "energy" else 0.0
            if dim in ("k_y", "k_x"):
                offset = -(size // 2) * override
            found = (offset + override * np.arange(size), unit, float(override))
        if found is None:
            stated = f" (file says {axis.scale:g} {axis.units!r})" if axis.units else ""
            notes.append(f"{dim} is not calibrated{stated}; stored in pixels: set it with {flag}")
            found = (np.arange(size, dtype=float), "px", float("nan"))
        values, unit, step = found
        coords[dim] = (dim, values, {"units": unit})
        steps[dim] = step
    scan_step = steps["scan_y"]
    if not math.isnan(steps["scan_x"]) and not math.isclose(
        scan_step, steps["scan_x"], rel_tol=1e-3
    ):
        notes.append(f"scan steps differ in y and x ({scan_step:g}, {steps['scan_x']:g} nm)")
    attrs: dict[str, Any] = {
        "beam_energy_kev": float("nan"),
        "convergence_semiangle_mrad": float("nan"),
        "scan_step_nm": scan_step,
    }
    attrs.update(raw.attrs)
    if cal.beam_energy_kev is not None:
        attrs["beam_energy_kev"] = float(cal.beam_energy_kev)
    if cal.convergence_semiangle_mrad is not None:
        attrs["convergence_semiangle_mrad"] = float(cal.convergence_semiangle_mrad)
    for name, flag in (
        ("beam_energy_kev", "--beam-energy KEV"),
        ("convergence_semiangle_mrad", "--convergence MRAD"),
    ):
        if math.isnan(attrs[name]):
            notes.append(f"{name} is unknown; set it with {flag}")
    attrs["source"] = raw.description
    attrs["schema_version"] = SCHEMA_VERSION
    intensity = xr.Variable(dims, data, {"long_name": "intensity"})
    return xr.Dataset({"intensity": intensity}, coords=coords, attrs=attrs), notes


def convert(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    chunks: ChunksArg = "auto",
    overwrite: bool = False,
    calibration: Calibration | None = None,
) -> ConvertResult:
    """Stream ``source`` into a zarr store in the dask_stemnmf layout.

    The data are read chunk by chunk (never whole), written atomically (a hidden temporary
    store renamed into place) and checked for NaN, Inf and negative values in the same pass;
    the counts are reported and kept in the store's ``value_summary`` attribute. The stored
    dtype is kept. Notes about calibrations and bad values are issued as
    :class:`~dask_stemnmf.errors.StemNMFWarning`.

    Parameters
    ----------
    source
        Input file (see :func:`dask_stemnmf.readers.read_raw`), or a zarr store in our layout
        (re-chunked into whole-pattern chunks).
    output
        Destination zarr store.
    dataset
        HDF5 dataset path, when the file holds several candidates.
    chunks
        Scan chunks of the output, see :func:`dask_stemnmf.data.rechunk_scan`.
    overwrite
        Replace an existing output.
    calibration
        Calibrations that override (or supply) the file's.

    Returns
    -------
    ConvertResult
        Output path, value report and calibration notes.
    """
    out = check_output_path(output, overwrite=overwrite)
    src = Path(source).expanduser()
    if src.exists() and out.exists() and src.resolve() == out.resolve():
        raise InputError(f"output {out} is the input; write to another path")
    is_zarr = (src / "zarr.json").exists() or (src / ".zgroup").exists()
    if src.suffix.lower() not in RSCIIO_FORMATS and (src.suffix.lower() == ".zarr" or is_zarr):
        ds = open_4dstem(src, chunks=None)
        ds.attrs.setdefault("source", str(src))
        notes: list[str] = []
    else:
        asked = _scan_chunks_arg(chunks, None)
        raw = read_raw(src, dataset=dataset, chunks=asked)
        ds, notes = dataset_from_raw(raw, calibration)
    ds.attrs["converted_by"] = f"dask_stemnmf {__version__}"
    ds.attrs["converted_from"] = str(src.absolute())
    intensity = ds["intensity"].data
    n_values = int(np.prod(intensity.shape))
    check = needs_value_pass(intensity.dtype)
    also = (value_stats(intensity),) if check else ()

    def summary(results: tuple[Any, ...]) -> dict[str, Any]:
        report = value_report_from(results[0], n_values) if check else unchecked_report(n_values)
        return {"value_summary": report.as_dict()}

    results = write_scan(
        ds, out, overwrite=overwrite, chunks=chunks, also=also, extra_attrs=summary
    )
    report = value_report_from(results[0], n_values) if check else unchecked_report(n_values)
    found = value_notes(report)
    for line in notes + found:
        warnings.warn(line, StemNMFWarning, stacklevel=2)
    return ConvertResult(out, report, notes + found)
