"""``stemnmf info``: what a stored scan holds and whether it validates."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import dask
import numpy as np

from ._fsutil import directory_size
from .convert import value_notes
from .data import COMPUTE_ITEMSIZE, open_4dstem
from .errors import StemNMFWarning
from .physics import probe_fwhm_nm
from .values import needs_value_pass, unchecked_report, value_report_from, value_stats

__all__ = ["describe", "format_description"]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def describe(store: str | os.PathLike[str], *, check_values: bool = True) -> dict[str, Any]:
    """Describe a stored scan: shape, dtype, chunks, calibrations, sizes, validity.

    Parameters
    ----------
    store
        Path of the zarr store.
    check_values
        Read all values once to count NaN, Inf and negative values (skipped for unsigned
        integer counts, which cannot hold them). NaN or Inf make the scan fail to validate;
        negative values and missing calibrations are notes only (the fit clips the former
        and measures the maps' resolution from the data without the latter).

    Returns
    -------
    dict
        Plain values (JSON-serialisable); ``notes`` lists what needs attention.

    Raises
    ------
    InputError
        If the store cannot be opened or does not follow the data model.
    """
    path = Path(store).expanduser()
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StemNMFWarning)
        ds = open_4dstem(path, chunks=None)
    notes += [str(w.message) for w in caught if issubclass(w.category, StemNMFWarning)]
    intensity = ds["intensity"]
    data = intensity.data
    zarr_format = 3 if (path / "zarr.json").exists() else 2
    info: dict[str, Any] = {
        "path": str(path),
        "zarr_format": zarr_format,
        "schema_version": ds.attrs.get("schema_version"),
        "kind": "4D-STEM" if intensity.ndim == 4 else "spectrum image",
        "dims": list(intensity.dims),
        "shape": [int(s) for s in intensity.shape],
        "dtype": str(intensity.dtype),
        "chunks": [int(c[0]) for c in data.chunks],
        "n_chunks": int(math.prod(len(c) for c in data.chunks)),
        "chunk_bytes_float32": int(math.prod(c[0] for c in data.chunks) * COMPUTE_ITEMSIZE),
        "bytes_on_disk": directory_size(path),
        "bytes_float32": int(math.prod(intensity.shape) * COMPUTE_ITEMSIZE),
        "bytes_stored_dtype": int(math.prod(intensity.shape) * intensity.dtype.itemsize),
        "calibration": {},
        "attrs": {},
    }
    for dim in intensity.dims:
        coord = ds[dim].values
        step = float(coord[1] - coord[0]) if coord.size > 1 else float("nan")
        info["calibration"][dim] = {
            "step": step,
            "first": float(coord[0]),
            "last": float(coord[-1]),
            "units": ds[dim].attrs.get("units", ""),
        }
    for name in ("beam_energy_kev", "convergence_semiangle_mrad", "scan_step_nm", "probe_fwhm_nm"):
        value = ds.attrs.get(name)
        info["attrs"][name] = None if value is None else float(value)
    energy, alpha = info["attrs"]["beam_energy_kev"], info["attrs"]["convergence_semiangle_mrad"]
    if (
        info["attrs"]["probe_fwhm_nm"] is None
        and energy
        and alpha
        and not (math.isnan(energy) or math.isnan(alpha))
    ):
        info["attrs"]["probe_fwhm_nm (Airy, derived)"] = probe_fwhm_nm(energy, alpha)
    info["source"] = ds.attrs.get("source", "")
    info["detector_mask"] = (
        int(ds["detector_mask"].sum()) if "detector_mask" in ds.variables else None
    )
    if "true_class" in ds.variables:
        tc = np.asarray(ds["true_class"].values)
        info["ground_truth"] = {
            "sources": int(tc.size),
            "precipitates": int((tc >= 0).sum()),
            "phases": int(np.unique(tc[tc >= 0]).size),
        }
    n_values = int(math.prod(intensity.shape))
    if check_values and needs_value_pass(intensity.dtype):
        (stats,) = dask.compute(value_stats(data))
        report = value_report_from(stats, n_values)
    else:
        report = unchecked_report(n_values)
    info["values"] = report.as_dict()
    notes += value_notes(report)
    for name, flag in _FLAGS.items():
        value = info["attrs"][name]
        if value is None or math.isnan(value):
            notes.append(f"{name} is unknown; {_CONSEQUENCE[name]} (set it with {flag})")
    info["notes"] = notes
    # negative values are clipped by the fit (a note above); NaN and Inf are refused
    info["validates"] = report.n_nan == 0 and report.n_inf == 0
    return info


_FLAGS = {
    "beam_energy_kev": "`stemnmf convert --beam-energy KEV`",
    "convergence_semiangle_mrad": "`stemnmf convert --convergence MRAD`",
    "scan_step_nm": "`stemnmf convert --scan-step NM`",
}
_CONSEQUENCE = {
    "beam_energy_kev": "the probe's resolution limit is unknown, the maps' is measured from "
    "the data",
    "convergence_semiangle_mrad": "the probe's resolution limit is unknown, the maps' is "
    "measured from the data",
    "scan_step_nm": "lengths are in scan pixels (px)",
}

_LABELS = {
    "beam_energy_kev": ("beam energy", "keV"),
    "convergence_semiangle_mrad": ("convergence", "mrad (semi-angle)"),
    "scan_step_nm": ("scan step", "nm"),
    "probe_fwhm_nm": ("probe FWHM", "nm"),
    "probe_fwhm_nm (Airy, derived)": ("probe FWHM", "nm (Airy probe, derived)"),
}


def format_description(info: dict[str, Any]) -> str:
    """Format :func:`describe`'s result for a terminal.

    Parameters
    ----------
    info
        The description.

    Returns
    -------
    str
        Several lines of text.
    """
    shape, chunks, cal = info["shape"], info["chunks"], info["calibration"]
    positions = shape[0] * shape[1]
    pixels = math.prod(shape[2:])
    sig = " x ".join(str(s) for s in shape[2:])
    lines = [
        f"{info['path']}  (zarr format {info['zarr_format']}, schema {info['schema_version']})",
        f"kind:          {info['kind']}  dims {tuple(info['dims'])}",
        f"shape:         scan {shape[0]} x {shape[1]}, signal {sig}  "
        f"({positions:,} positions x {pixels:,} values)",
        f"dtype:         {info['dtype']} (stored; computation in float32)",
        f"chunks:        {chunks[0]} x {chunks[1]} positions, whole patterns; "
        f"{info['n_chunks']} chunks of {_human(info['chunk_bytes_float32'])} as float32",
    ]
    for dim, c in cal.items():
        step = (
            "uncalibrated" if math.isnan(c["step"]) else f"{c['step']:.6g} {c['units']} per pixel"
        )
        lines.append(f"{dim + ':':<14} {step}  ({c['first']:.6g} .. {c['last']:.6g} {c['units']})")
    for name, value in info["attrs"].items():
        if value is not None:
            label, unit = _LABELS.get(name, (name, ""))
            shown = "unknown" if math.isnan(value) else f"{value:.6g} {unit}"
            lines.append(f"{label + ':':<14} {shown}")
    on_disk, stored = info["bytes_on_disk"], info["bytes_stored_dtype"]
    ratio = f" (compression {stored / on_disk:.1f}x)" if on_disk else ""
    lines.append(f"size on disk:  {_human(on_disk)}{ratio}")
    lines.append(f"in memory:     {_human(info['bytes_float32'])} as float32")
    v = info["values"]
    if v["checked"]:
        lines.append(
            f"values:        {v['n_nan']} NaN, {v['n_inf']} Inf, {v['n_negative']} negative; "
            f"finite range {v['min']:.6g} .. {v['max']:.6g}"
        )
    elif info["dtype"].startswith("uint"):
        lines.append("values:        unsigned integer counts (no NaN, Inf or negative possible)")
    else:
        lines.append("values:        not checked (run without --quick to check)")
    mask = info["detector_mask"]
    lines.append(f"detector mask: {'none' if mask is None else f'{mask} valid pixels'}")
    if "ground_truth" in info:
        gt = info["ground_truth"]
        lines.append(
            f"ground truth:  {gt['sources']} sources ({gt['precipitates']} precipitates "
            f"of {gt['phases']} phases, plus direct beam and matrix)"
        )
    if info["source"]:
        lines.append(f"source:        {info['source']}")
    for note in info["notes"]:
        lines.append(f"note:          {note}")
    lines.append(f"validates:     {'yes' if info['validates'] else 'no'}")
    return "\n".join(lines)
