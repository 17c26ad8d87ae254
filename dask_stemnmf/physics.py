"""Electron-optical relations used for calibrations and constraints.

Units: beam energy in keV, angles in mrad, lengths in nm, spatial frequencies in 1/nm.
"""

from __future__ import annotations

import math

__all__ = [
    "bragg_disc_radius_inv_nm",
    "electron_wavelength_nm",
    "probe_cutoff_inv_nm",
    "probe_fwhm_nm",
]


def electron_wavelength_nm(beam_energy_kev: float) -> float:
    """Relativistic electron wavelength.

    Parameters
    ----------
    beam_energy_kev
        Accelerating voltage in kV (beam energy in keV).

    Returns
    -------
    float
        Wavelength in nm (2.508e-3 nm at 200 keV).
    """
    if not beam_energy_kev > 0:
        raise ValueError(f"beam energy must be positive, got {beam_energy_kev} keV")
    volts = beam_energy_kev * 1e3
    # h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2))) with the constants folded in.
    return 1.226426 / math.sqrt(volts * (1.0 + 0.9784756e-6 * volts))


def probe_fwhm_nm(beam_energy_kev: float, convergence_semiangle_mrad: float) -> float:
    """FWHM of a diffraction-limited (Airy) probe: ``0.514 lambda / alpha``.

    Parameters
    ----------
    beam_energy_kev
        Beam energy in keV.
    convergence_semiangle_mrad
        Probe-forming convergence semi-angle in mrad.

    Returns
    -------
    float
        Probe intensity FWHM in nm.
    """
    return 0.514 * electron_wavelength_nm(beam_energy_kev) / (convergence_semiangle_mrad * 1e-3)


def probe_cutoff_inv_nm(beam_energy_kev: float, convergence_semiangle_mrad: float) -> float:
    """Highest spatial frequency an incoherent image can hold: ``q_max = 2 alpha / lambda``.

    Returns
    -------
    float
        Cutoff frequency in cycles per nm.
    """
    return 2.0 * convergence_semiangle_mrad * 1e-3 / electron_wavelength_nm(beam_energy_kev)


def bragg_disc_radius_inv_nm(beam_energy_kev: float, convergence_semiangle_mrad: float) -> float:
    """Radius of a diffraction disc (and of the direct beam), ``alpha / lambda``, in 1/nm."""
    return convergence_semiangle_mrad * 1e-3 / electron_wavelength_nm(beam_energy_kev)
