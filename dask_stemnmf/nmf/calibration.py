"""Calibrations the engine derives from a scan: the map cutoff and the closing radius."""

from __future__ import annotations

import math

import xarray as xr

from ..errors import InputError
from ..physics import bragg_disc_radius_inv_nm, probe_cutoff_inv_nm

__all__ = ["default_continuity_radius", "map_cutoff", "scan_step"]


def scan_step(ds: xr.Dataset) -> float:
    """Return the scan step in nm; refuse an unknown (NaN) one."""
    step = float(ds.attrs.get("scan_step_nm", float("nan")))
    if math.isnan(step):
        raise InputError(
            "scan_step_nm is unknown; set ds.attrs['scan_step_nm'] for the map constraint"
        )
    return step


def map_cutoff(ds: xr.Dataset, map_resolution_nm: float | str) -> float:
    """Cutoff frequency (cycles per nm) of the map constraint.

    Parameters
    ----------
    ds
        The scan (for ``beam_energy_kev`` and ``convergence_semiangle_mrad``).
    map_resolution_nm
        A length ``d`` (the finest period a map may hold: ``q_c = 1/d``), or ``"probe"``:
        ``q_c = 2 alpha / lambda``, the incoherent imaging limit of the probe.

    Returns
    -------
    float
        ``q_c`` in 1/nm.
    """
    if map_resolution_nm == "probe":
        energy = float(ds.attrs.get("beam_energy_kev", float("nan")))
        alpha = float(ds.attrs.get("convergence_semiangle_mrad", float("nan")))
        if math.isnan(energy) or math.isnan(alpha):
            raise InputError(
                "map_resolution_nm='probe' needs beam_energy_kev and convergence_semiangle_mrad; "
                "set them or pass map_resolution_nm in nm"
            )
        return probe_cutoff_inv_nm(energy, alpha)
    value = float(map_resolution_nm)
    if not value > 0:
        raise InputError(f"map_resolution_nm must be positive, got {value}")
    return 1.0 / value


def default_continuity_radius(ds: xr.Dataset, signal_dims: tuple[str, ...]) -> float:
    """Return the closing radius in pixels: half a Bragg disc radius, at least one pixel.

    The disc radius ``alpha / lambda`` comes from beam energy, semi-angle and detector
    calibration. A closing of radius ``r`` bridges any gap narrower than ``2 r``: with half a
    disc radius, neighbouring Bragg discs stay apart while dips up to about a disc radius
    across are filled (a full disc radius filled the real valleys between close discs and
    cost 4.5 % more residual at 50,000 e/pattern on the simulator, one pixel 0.8 %).
    Without a calibration: 1 pixel for diffractions, 2 channels for spectra.
    """
    if len(signal_dims) != 2:
        return 2.0
    energy = float(ds.attrs.get("beam_energy_kev", float("nan")))
    alpha = float(ds.attrs.get("convergence_semiangle_mrad", float("nan")))
    dim = signal_dims[-1]
    coord = ds[dim].values
    if coord.size < 2 or math.isnan(energy) or math.isnan(alpha):
        return 1.0
    step = abs(float(coord[1] - coord[0]))
    units = ds[dim].attrs.get("units", "")
    if units == "1/nm":
        return max(1.0, 0.5 * bragg_disc_radius_inv_nm(energy, alpha) / step)
    if units == "mrad":
        return max(1.0, 0.5 * alpha / step)
    return 1.0
