"""An independent generator of 4D-STEM test scans, built on diffsims (validation only).

``dask_stemnmf.simulate_scan`` is the project's test bed; this module is a second one, written
without its code, so that the engine is not only checked against the model it was tuned on.
It needs ``diffsims`` (the ``validation`` extra) and is never imported by the package.

The model, per scan position ``p`` with dose ``D`` electrons per pattern:

- **crystals**: real structures built with ``diffpy.structure`` (B2 CuZr, C11b CuZr2,
  hcp Zr, fcc Cu, fcc Al), each seen on a low-index zone axis; the reflections of the zero-order
  Laue zone and their kinematic intensities (``|F_hkl|^2`` with Lobato scattering factors and a
  Debye-Waller factor) come from diffsims' ``SimulationGenerator``; every reflection is a disc
  of the convergence angle's radius (``alpha / lambda``) with Gaussian-soft edges; each
  precipitate has its own in-plane rotation (and, optionally, its own zone axis);
- **amorphous matrix**: the Debye scattering equation (through the partial pair distributions,
  Lorch-windowed, less the uniform density) of a dense random packing of Cu, Zr and Al atoms
  relaxed from random positions in a periodic box, weighted by the atoms' electron scattering
  factors; plus an inelastic background ``1 / (k^2 + k_c^2)``; the sum is convolved with the
  probe's disc (the illumination cone);
- **direct beam**: a soft-edged disc at a sub-pixel position near the detector centre;
- **detector**: every pattern is convolved with a point-spread function, a Gaussian core of
  ``psf_sigma_px`` plus a long tail ``(1 + r^2 / w^2)^(-3/2)`` of weight ``psf_tail``;
- **maps**: a film whose thickness varies smoothly (a Gaussian-filtered random field and a
  wedge) holds spherical precipitates; per position the optical depths ``t / l`` of glass and
  crystals (crystals scatter ``crystal_contrast`` times more strongly per nm) give the
  scattered fraction ``1 - exp(-tau)``, shared in proportion to the depths, and the direct beam
  keeps ``exp(-tau)``; those fractions are blurred by a Gaussian probe of FWHM
  ``probe_fwhm_px`` scan pixels (so the maps are not band-limited as an Airy probe's are);
- counts are Poisson at ``dose`` electrons per pattern, each position from its own random
  stream, so the data do not depend on the chunking.

The returned dataset follows the package's data model (``intensity (scan_y, scan_x, k_y,
k_x)``, calibrated coordinates and attrs) with the ground truth of ``simulate_scan``:
``true_maps (source, scan_y, scan_x)`` in electrons, ``true_patterns (source, k_y, k_x)`` each
summing to 1, ``true_class``, ``true_centre_y/x``, ``true_radius``, ``true_rotation`` (degrees
from ``+k_x`` toward ``+k_y``), ``true_thickness``, plus ``true_zone_axis (source, uvw)``.
Source 0 is the direct beam, source 1 the amorphous matrix, then one source per precipitate.

    python -m benchmarks.kinematic --out scan.zarr --scan 48x48 --detector 64x64
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage, signal, special
from scipy.spatial import cKDTree

from dask_stemnmf.physics import bragg_disc_radius_inv_nm, electron_wavelength_nm
from dask_stemnmf.schema import SCHEMA_VERSION

__all__ = [
    "PHASES",
    "CrystalPhase",
    "amorphous_intensity",
    "detector_psf",
    "kinematic_scan",
    "main",
    "zone_axis_spots",
]

Atoms = tuple[tuple[str, tuple[float, float, float]], ...]
ZoneAxis = tuple[int, int, int]


@dataclass(frozen=True)
class CrystalPhase:
    """A crystal structure and the zone axes it may be seen on.

    Attributes
    ----------
    name
        Short name (also the phase name given to orix).
    space_group
        International space-group number.
    lattice
        ``(a, b, c, alpha, beta, gamma)`` in angstrom and degrees.
    atoms
        Every atom of the unit cell: ``(element, fractional xyz)``.
    zone_axes
        Low-index zone axes ``[uvw]`` (direct-lattice indices); the first is the default.
    """

    name: str
    space_group: int
    lattice: tuple[float, float, float, float, float, float]
    atoms: Atoms
    zone_axes: tuple[ZoneAxis, ...]


def _fcc(element: str) -> Atoms:
    return tuple((element, p) for p in ((0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)))


_ZR_4E = 0.3554  # z of Zr on 4e in C11b CuZr2

#: The crystalline phases, taken in this order (``phases=3`` uses the first three).
PHASES: tuple[CrystalPhase, ...] = (
    CrystalPhase(
        "CuZr_B2",
        221,
        (3.26, 3.26, 3.26, 90.0, 90.0, 90.0),
        (("Cu", (0.0, 0.0, 0.0)), ("Zr", (0.5, 0.5, 0.5))),
        ((0, 0, 1), (0, 1, 1), (1, 1, 1)),
    ),
    CrystalPhase(
        "CuZr2_C11b",
        139,
        (3.22, 3.22, 11.18, 90.0, 90.0, 90.0),
        (
            ("Cu", (0.0, 0.0, 0.0)),
            ("Cu", (0.5, 0.5, 0.5)),
            ("Zr", (0.0, 0.0, _ZR_4E)),
            ("Zr", (0.0, 0.0, -_ZR_4E)),
            ("Zr", (0.5, 0.5, 0.5 + _ZR_4E)),
            ("Zr", (0.5, 0.5, 0.5 - _ZR_4E)),
        ),
        ((1, 0, 0), (1, 1, 0), (0, 0, 1)),
    ),
    CrystalPhase(
        "Zr_hcp",
        194,
        (3.232, 3.232, 5.147, 90.0, 90.0, 120.0),
        (("Zr", (1 / 3, 2 / 3, 0.25)), ("Zr", (2 / 3, 1 / 3, 0.75))),
        ((0, 0, 1), (1, 0, 0), (1, 1, 0)),
    ),
    CrystalPhase(
        "Cu_fcc",
        225,
        (3.615, 3.615, 3.615, 90.0, 90.0, 90.0),
        _fcc("Cu"),
        ((0, 1, 1), (0, 0, 1), (1, 1, 1)),
    ),
    CrystalPhase(
        "Al_fcc",
        225,
        (4.05, 4.05, 4.05, 90.0, 90.0, 90.0),
        _fcc("Al"),
        ((0, 0, 1), (0, 1, 1), (1, 1, 1)),
    ),
)

#: Amorphous matrix: atom fractions and hard-sphere radii (angstrom) of the packing.
GLASS_COMPOSITION: tuple[tuple[str, float, float], ...] = (
    ("Cu", 0.46, 1.28),
    ("Zr", 0.46, 1.60),
    ("Al", 0.08, 1.43),
)


def zone_axis_spots(
    phase: CrystalPhase,
    zone_axis: ZoneAxis | None = None,
    *,
    beam_energy_kev: float = 200.0,
    k_limit_inv_nm: float = 10.0,
    max_excitation_error: float = 0.03,
    debye_waller_a2: float = 0.6,
    min_relative_intensity: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reflections of a phase on a zone axis, from diffsims' kinematic simulation.

    Parameters
    ----------
    phase
        The crystal.
    zone_axis
        ``[uvw]`` parallel to the beam; default the phase's first zone axis.
    beam_energy_kev
        Beam energy in keV.
    k_limit_inv_nm
        Largest ``|g|`` kept, 1/nm.
    max_excitation_error
        Largest excitation error kept, 1/angstrom (about one over the crystal's thickness).
    debye_waller_a2
        Debye-Waller ``B`` of every element, angstrom^2.
    min_relative_intensity
        Reflections weaker than this fraction of the strongest (forbidden ones) are dropped.

    Returns
    -------
    g_yx : numpy.ndarray
        ``(n, 2)`` reflection positions ``(k_y, k_x)`` in 1/nm (the beam along ``-z``, the
        crystal's in-plane orientation that of diffsims' alignment, rotation 0).
    intensity : numpy.ndarray
        ``(n,)`` kinematic intensities ``|F|^2`` times the shape factor, the strongest 1.
    hkl : numpy.ndarray
        ``(n, 3)`` Miller indices.
    """
    from diffpy.structure import Atom, Lattice, Structure
    from diffsims.generators.simulation_generator import SimulationGenerator
    from orix.crystal_map import Phase
    from orix.quaternion import Rotation
    from orix.vector import Vector3d

    uvw = phase.zone_axes[0] if zone_axis is None else tuple(int(v) for v in zone_axis)
    structure = Structure(
        atoms=[Atom(el, xyz) for el, xyz in phase.atoms], lattice=Lattice(*phase.lattice)
    )
    orix_phase = Phase(name=phase.name, space_group=phase.space_group, structure=structure)
    direction = Vector3d(orix_phase.structure.lattice.cartesian(uvw))
    # diffsims turns the crystal by the inverse of the rotation it is given: pass the rotation
    # taking the beam direction z onto the zone axis, so that the zone axis ends up along z.
    rotation = Rotation.from_align_vectors(direction, Vector3d.zvector())
    generator = SimulationGenerator(beam_energy_kev, scattering_params="lobato")
    elements = {el for el, _ in phase.atoms}
    sim = generator.calculate_diffraction2d(
        orix_phase,
        rotation,
        reciprocal_radius=k_limit_inv_nm / 10.0,
        with_direct_beam=False,
        max_excitation_error=max_excitation_error,
        debye_waller_factors=dict.fromkeys(elements, debye_waller_a2),
    )
    vectors = sim.coordinates
    xyz = np.asarray(vectors.data, dtype=np.float64).reshape(-1, 3) * 10.0  # 1/A -> 1/nm
    intensity = np.asarray(vectors.intensity, dtype=np.float64).reshape(-1)
    hkl = np.asarray(vectors.hkl, dtype=np.float64).reshape(-1, 3)
    if intensity.size == 0 or not intensity.max() > 0:
        raise ValueError(f"{phase.name} shows no reflection on [{uvw}] within {k_limit_inv_nm}")
    keep = intensity > min_relative_intensity * intensity.max()
    g_yx = xyz[keep][:, [1, 0]]
    return g_yx, intensity[keep] / intensity[keep].max(), np.round(hkl[keep]).astype(int)


def _lobato_f(element: str, s_inv_a: np.ndarray) -> np.ndarray:
    """Electron scattering factor (angstrom) at ``s = 1/d`` (1/angstrom), Lobato's fit."""
    from diffsims.utils.lobato_scattering_params import ATOMIC_SCATTERING_PARAMS_LOBATO

    coeffs = np.asarray(ATOMIC_SCATTERING_PARAMS_LOBATO[element], dtype=np.float64)
    b = np.square(s_inv_a)[:, None] * coeffs[None, :, 1]
    return np.sum(coeffs[None, :, 0] * (2.0 + b) / np.square(1.0 + b), axis=1)


def _dense_random_packing(
    rng: np.random.Generator, n_atoms: int, density: float, packing_fraction: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Relax random positions of hard spheres in a periodic cube until few overlaps remain.

    Returns positions ``(n, 3)`` in angstrom, the species index of each atom and the box side.
    """
    fractions = np.array([c[1] for c in GLASS_COMPOSITION])
    radii = np.array([c[2] for c in GLASS_COMPOSITION])
    species = rng.choice(len(GLASS_COMPOSITION), size=n_atoms, p=fractions / fractions.sum())
    box = (n_atoms / density) ** (1.0 / 3.0)
    r = radii[species]
    r = r * (packing_fraction * box**3 / np.sum(4.0 / 3.0 * np.pi * r**3)) ** (1.0 / 3.0)
    x = rng.uniform(0.0, box, size=(n_atoms, 3))
    for _ in range(120):
        pairs = cKDTree(x, boxsize=box).query_pairs(2.0 * r.max(), output_type="ndarray")
        d = x[pairs[:, 1]] - x[pairs[:, 0]]
        d -= box * np.round(d / box)
        dist = np.maximum(np.linalg.norm(d, axis=1), 1e-9)
        overlap = r[pairs[:, 0]] + r[pairs[:, 1]] - dist
        hit = overlap > 0
        if not hit.any() or overlap[hit].max() < 0.02:
            break
        push = d[hit] / dist[hit, None] * (0.45 * overlap[hit])[:, None]
        dx = np.zeros_like(x)
        np.add.at(dx, pairs[hit, 0], -push)
        np.add.at(dx, pairs[hit, 1], push)
        x = (x + dx) % box
    return x, species, box


def amorphous_intensity(
    k_inv_nm: np.ndarray,
    *,
    seed: int | np.random.Generator = 0,
    n_atoms: int = 1000,
    density_per_a3: float = 0.058,
    packing_fraction: float = 0.62,
) -> np.ndarray:
    """Coherent elastic scattering of a Cu-Zr-Al glass per atom, by the Debye equation.

    A dense random packing of ``n_atoms`` (see :data:`GLASS_COMPOSITION`) in a periodic cube
    gives the pair distances up to half the box; the Debye sum over pairs, each species pair
    weighted by ``f_a f_b``, is taken with a Lorch window and less the uniform density (which
    would otherwise give the box's forward scattering), plus the self term ``sum f_a^2``.

    Parameters
    ----------
    k_inv_nm
        Scattering vectors ``|k| = 1/d`` in 1/nm (any shape).
    seed
        Seed (or generator) of the packing.
    n_atoms, density_per_a3, packing_fraction
        Size of the packing, number density (atoms per angstrom^3) and the hard spheres'
        volume fraction.

    Returns
    -------
    numpy.ndarray
        Intensity per atom (angstrom^2), the shape of ``k_inv_nm``, >= 0.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    x, species, box = _dense_random_packing(rng, n_atoms, density_per_a3, packing_fraction)
    r_max = box / 2.0
    pairs = cKDTree(x, boxsize=box).query_pairs(r_max, output_type="ndarray")
    d = x[pairs[:, 1]] - x[pairs[:, 0]]
    d -= box * np.round(d / box)
    dist = np.linalg.norm(d, axis=1)
    dr = 0.02
    edges = np.arange(0.0, r_max + dr, dr)
    rc = 0.5 * (edges[1:] + edges[:-1])
    k = np.asarray(k_inv_nm, dtype=np.float64)
    s_grid = np.linspace(0.0, max(float(k.max()) / 10.0, 0.01) * 1.01, 512)  # 1/A
    q = 2.0 * np.pi * s_grid
    kernel = np.sinc(np.outer(q, rc) / np.pi) * np.sinc(rc / r_max)[None, :]  # sin(qr)/qr, Lorch
    n_species = len(GLASS_COMPOSITION)
    f = np.stack([_lobato_f(c[0], s_grid) for c in GLASS_COMPOSITION])  # (species, s)
    counts = np.bincount(species, minlength=n_species).astype(np.float64)
    intensity = np.sum(counts[:, None] * f**2, axis=0)
    code = species[pairs[:, 0]] * n_species + species[pairs[:, 1]]
    for a in range(n_species):
        for b in range(n_species):
            hist, _ = np.histogram(dist[code == a * n_species + b], edges)
            intensity += 2.0 * f[a] * f[b] * (kernel @ hist)
    f_mean = counts @ f / n_atoms
    uniform = kernel @ (4.0 * np.pi * rc**2 * dr)
    intensity -= n_atoms * f_mean**2 * density_per_a3 * uniform
    per_atom = np.clip(intensity / n_atoms, 0.0, None)
    return np.interp(k / 10.0, s_grid, per_atom)


def detector_psf(
    shape: tuple[int, int], sigma_px: float, tail: float, tail_width_px: float
) -> np.ndarray:
    """The detector's point-spread function on a ``(2 qy - 1, 2 qx - 1)`` grid, summing to 1.

    ``(1 - tail)`` of a Gaussian core of ``sigma_px`` plus ``tail`` of a long tail
    ``(1 + r^2 / w^2)^(-3/2)`` (a 2-D Lorentzian-like profile with finite integral).
    """
    qy, qx = shape
    y = np.arange(-(qy - 1), qy)[:, None].astype(np.float64)
    x = np.arange(-(qx - 1), qx)[None, :].astype(np.float64)
    r2 = y**2 + x**2
    if sigma_px > 0:
        core = np.exp(-0.5 * r2 / sigma_px**2)
    else:
        core = (r2 == 0).astype(np.float64)
    long_tail = (1.0 + r2 / tail_width_px**2) ** -1.5
    return (1.0 - tail) * core / core.sum() + tail * long_tail / long_tail.sum()


def _soft_disc(
    shape: tuple[int, int], cy: float, cx: float, radius: float, edge: float
) -> np.ndarray:
    """A disc of unit integral with an error-function edge of width ``edge`` (pixels).

    The integral is that of the whole disc, ``pi (radius^2 + edge^2)``, so a disc cut by the
    detector's border keeps its brightness and just loses what falls outside.
    """
    y = np.arange(shape[0])[:, None] - cy
    x = np.arange(shape[1])[None, :] - cx
    rho = np.hypot(y, x)
    edge = max(edge, 1e-6)
    disc = 0.5 * special.erfc((rho - radius) / (math.sqrt(2.0) * edge))
    return disc / (math.pi * (radius**2 + edge**2))


def _convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.clip(signal.fftconvolve(image, kernel, mode="same"), 0.0, None)


@dataclass(frozen=True)
class _Settings:
    seed: int
    scan: tuple[int, int]
    detector: tuple[int, int]
    precipitates: int
    phases: int
    dose: float
    probe_fwhm_px: float
    scan_step_nm: float
    beam_energy_kev: float
    convergence_semiangle_mrad: float
    psf_sigma_px: float
    psf_tail: float
    psf_tail_width_px: float
    k_max_inv_nm: float
    disc_edge_px: float
    precipitate_diameter_nm: tuple[float, float]
    film_thickness_nm: float
    thickness_variation: float
    scattered_fraction: float
    crystal_contrast: float
    inelastic_fraction: float
    random_zone_axes: bool
    noise: bool


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (int(value), int(value)) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or min(int(v) for v in pair) < 1:
        raise ValueError(f"{name}={value!r} must be two positive sizes")
    return int(pair[0]), int(pair[1])


def kinematic_scan(
    *,
    seed: int = 0,
    scan: int | tuple[int, int] = (48, 48),
    detector: int | tuple[int, int] = (64, 64),
    precipitates: int = 8,
    phases: int = 3,
    dose: float = 4000.0,
    probe_fwhm_px: float = 2.9,
    scan_step_nm: float = 0.3,
    beam_energy_kev: float = 200.0,
    convergence_semiangle_mrad: float = 1.5,
    psf_sigma_px: float = 1.0,
    psf_tail: float = 0.02,
    psf_tail_width_px: float = 4.0,
    k_max_inv_nm: float = 6.4,
    disc_edge_px: float = 0.5,
    precipitate_diameter_nm: tuple[float, float] = (1.5, 5.0),
    film_thickness_nm: float = 20.0,
    thickness_variation: float = 0.15,
    scattered_fraction: float = 0.4,
    crystal_contrast: float = 2.0,
    inelastic_fraction: float = 0.3,
    random_zone_axes: bool = False,
    noise: bool = True,
    chunks: int | tuple[int, int] = (32, 32),
) -> xr.Dataset:
    """Simulate a 4D-STEM scan of crystalline precipitates in a metallic glass with diffsims.

    See the module docstring for the model. The data are lazy (dask, chunked over the scan);
    patterns and maps are computed up front.

    Parameters
    ----------
    seed
        Seed of everything random; the output is identical for a seed whatever ``chunks``.
    scan, detector
        ``(ny, nx)`` scan positions and ``(qy, qx)`` detector pixels.
    precipitates, phases
        Number of precipitates and of crystalline phases (the first ``phases`` of
        :data:`PHASES`, 1-5); precipitates are dealt to the phases in turn, in random order.
    dose
        Electrons per pattern (expected counts summed over the detector).
    probe_fwhm_px
        FWHM of the Gaussian probe in scan pixels (blurs the maps).
    scan_step_nm
        Scan step in nm.
    beam_energy_kev, convergence_semiangle_mrad
        Beam energy and probe semi-angle; set the disc radius ``alpha / lambda``.
    psf_sigma_px, psf_tail, psf_tail_width_px
        Detector point-spread function: Gaussian core, weight and width of its long tail.
    k_max_inv_nm
        Half-width of the detector in 1/nm (sets the detector's pixel size).
    disc_edge_px
        Width (standard deviation) of the discs' error-function edges, detector pixels.
    precipitate_diameter_nm
        Range of precipitate diameters, nm.
    film_thickness_nm, thickness_variation
        Mean film thickness (nm) and the relative amplitude of its smooth variation.
    scattered_fraction
        Fraction of the beam the glass film scatters at mean thickness.
    crystal_contrast
        How much more strongly a crystal scatters than the same thickness of glass.
    inelastic_fraction
        Share of the matrix pattern in its inelastic background.
    random_zone_axes
        Put each precipitate on one of its phase's low-index zone axes at random (then only
        precipitates on the same zone axis share a pattern up to rotation); default the
        phase's first zone axis for all.
    noise
        Poisson counts; ``False`` gives the float32 expectation.
    chunks
        Scan chunks ``(cy, cx)`` of ``intensity``.

    Returns
    -------
    xarray.Dataset
        ``intensity (scan_y, scan_x, k_y, k_x)`` (uint16/uint32 counts, or float32 without
        noise) and the ground truth (see the module docstring).
    """
    st = _Settings(
        int(seed),
        _pair(scan, "scan"),
        _pair(detector, "detector"),
        int(precipitates),
        int(phases),
        float(dose),
        float(probe_fwhm_px),
        float(scan_step_nm),
        float(beam_energy_kev),
        float(convergence_semiangle_mrad),
        float(psf_sigma_px),
        float(psf_tail),
        float(psf_tail_width_px),
        float(k_max_inv_nm),
        float(disc_edge_px),
        (float(precipitate_diameter_nm[0]), float(precipitate_diameter_nm[1])),
        float(film_thickness_nm),
        float(thickness_variation),
        float(scattered_fraction),
        float(crystal_contrast),
        float(inelastic_fraction),
        bool(random_zone_axes),
        bool(noise),
    )
    if st.precipitates < 0 or not 1 <= st.phases <= len(PHASES):
        raise ValueError(f"precipitates must be >= 0 and phases in 1..{len(PHASES)}")
    for name in (
        "dose",
        "scan_step_nm",
        "beam_energy_kev",
        "convergence_semiangle_mrad",
        "k_max_inv_nm",
        "film_thickness_nm",
        "psf_tail_width_px",
    ):
        if not getattr(st, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(st, name)}")
    if not 0 <= st.psf_tail < 1 or not 0 < st.scattered_fraction < 1:
        raise ValueError("psf_tail must lie in [0, 1) and scattered_fraction in (0, 1)")
    return _build(st, _pair(chunks, "chunks"))


def _crystal_patterns(
    st: _Settings,
    rng: np.random.Generator,
    beam_centre: tuple[float, float],
    dk: float,
    disc_px: float,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Per precipitate: its pattern (before the PSF), phase, rotation and zone axis."""
    qy, qx = st.detector
    corners = np.array([[0, 0], [0, qx - 1], [qy - 1, 0], [qy - 1, qx - 1]]) - np.array(beam_centre)
    k_limit = (float(np.hypot(*corners.T).max()) + 3.0 * disc_px) * dk
    used = PHASES[: st.phases]
    phase_of = (np.arange(st.precipitates) % st.phases)[rng.permutation(st.precipitates)]
    rotation = rng.uniform(0.0, 360.0, st.precipitates)
    zones = np.zeros((st.precipitates, 3), dtype=int)
    for i in range(st.precipitates):
        axes = used[phase_of[i]].zone_axes
        zones[i] = axes[int(rng.integers(len(axes)))] if st.random_zone_axes else axes[0]
    spots: dict[tuple[int, ZoneAxis], tuple[np.ndarray, np.ndarray]] = {}
    patterns = []
    for i in range(st.precipitates):
        key = (int(phase_of[i]), (int(zones[i, 0]), int(zones[i, 1]), int(zones[i, 2])))
        if key not in spots:
            g, inten, _ = zone_axis_spots(
                used[key[0]], key[1], beam_energy_kev=st.beam_energy_kev, k_limit_inv_nm=k_limit
            )
            spots[key] = (g, inten)
        g, inten = spots[key]
        theta = math.radians(rotation[i])
        # (y, x) rows turned counter-clockwise from +k_x toward +k_y by theta
        c, s = math.cos(theta), math.sin(theta)
        gy = (c * g[:, 0] + s * g[:, 1]) / dk
        gx = (-s * g[:, 0] + c * g[:, 1]) / dk
        image = np.zeros((qy, qx))
        for y, x, w in zip(gy, gx, inten, strict=True):
            cy, cx = beam_centre[0] + y, beam_centre[1] + x
            if -disc_px - 3 < cy < qy + disc_px + 3 and -disc_px - 3 < cx < qx + disc_px + 3:
                image += w * _soft_disc((qy, qx), cy, cx, disc_px, st.disc_edge_px)
        patterns.append(image)
    info = [
        {
            "name": ph.name,
            "space_group": ph.space_group,
            "lattice_angstrom_deg": list(ph.lattice),
            "atoms": [[el, list(xyz)] for el, xyz in ph.atoms],
            "zone_axes": [list(z) for z in ph.zone_axes],
        }
        for ph in used
    ]
    return patterns, phase_of, rotation, zones, info


def _matrix_pattern(
    st: _Settings,
    rng: np.random.Generator,
    beam_centre: tuple[float, float],
    dk: float,
    disc_px: float,
) -> np.ndarray:
    """Amorphous halo plus inelastic background, convolved with the probe's disc."""
    qy, qx = st.detector
    pad = int(math.ceil(disc_px + 4 * st.disc_edge_px)) + 2
    y = np.arange(-pad, qy + pad)[:, None] - beam_centre[0]
    x = np.arange(-pad, qx + pad)[None, :] - beam_centre[1]
    k = np.hypot(y, x) * dk
    elastic = amorphous_intensity(k, seed=rng)
    k_c = disc_px * dk
    inelastic = 1.0 / (k**2 + k_c**2)
    elastic /= elastic.sum()
    inelastic /= inelastic.sum()
    image = (1.0 - st.inelastic_fraction) * elastic + st.inelastic_fraction * inelastic
    side = 2 * pad + 1
    cone = _soft_disc((side, side), pad, pad, disc_px, st.disc_edge_px)
    return _convolve_same(image, cone)[pad : pad + qy, pad : pad + qx]


def _maps(
    st: _Settings, rng: np.random.Generator, n_precipitates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maps ``(source, ny, nx)`` in electrons, the relative thickness, centres and radii (nm)."""
    ny, nx = st.scan
    step = st.scan_step_nm
    # smooth thickness: a Gaussian-filtered random field plus a wedge, range +-variation
    field = ndimage.gaussian_filter(rng.normal(size=(ny, nx)), max(ny, nx) / 5.0, mode="reflect")
    field /= max(float(np.abs(field).max()), 1e-12)
    wedge_angle = rng.uniform(0.0, 2.0 * np.pi)
    yy = (np.arange(ny)[:, None] + 0.5) / ny - 0.5
    xx = (np.arange(nx)[None, :] + 0.5) / nx - 0.5
    field = field + math.sin(wedge_angle) * yy + math.cos(wedge_angle) * xx
    field /= max(float(np.abs(field).max()), 1e-12)
    relative = 1.0 + st.thickness_variation * field
    film = st.film_thickness_nm * relative

    extent = np.array([ny * step, nx * step])
    radii = 0.5 * np.minimum(
        rng.uniform(*st.precipitate_diameter_nm, size=n_precipitates), 0.45 * extent.min()
    )
    centres = np.zeros((n_precipitates, 2))
    for i in range(n_precipitates):
        for _ in range(100):
            cand = rng.uniform(radii[i], extent - radii[i])
            dist = np.hypot(*(centres[:i] - cand).T)
            if i == 0 or np.all(dist > 0.8 * (radii[:i] + radii[i])):
                break
        centres[i] = cand
    # projected thickness of each sphere, averaged over each pixel (5 x 5 sub-samples)
    sub = (np.arange(5) + 0.5) / 5.0
    crystal = np.zeros((n_precipitates, ny, nx))
    for i in range(n_precipitates):
        (cy, cx), r = centres[i] / step, radii[i] / step
        y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, ny)
        x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, nx)
        ys = (np.arange(y0, y1)[:, None] + sub[None, :]).reshape(-1)
        xs = (np.arange(x0, x1)[:, None] + sub[None, :]).reshape(-1)
        d2 = (ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2
        chord = 2.0 * np.sqrt(np.clip(r**2 - d2, 0.0, None)) * step
        crystal[i, y0:y1, x0:x1] = chord.reshape(y1 - y0, 5, x1 - x0, 5).mean(axis=(1, 3))
    total = crystal.sum(axis=0)
    over = total > 0.9 * film
    if over.any():
        crystal *= np.where(over, 0.9 * film / np.maximum(total, 1e-12), 1.0)
    mean_free_path = st.film_thickness_nm / -math.log(1.0 - st.scattered_fraction)
    tau_glass = (film - crystal.sum(axis=0)) / mean_free_path
    tau_crystal = crystal * st.crystal_contrast / mean_free_path
    tau = tau_glass + tau_crystal.sum(axis=0)
    scattered = -np.expm1(-tau)
    share = scattered / tau
    fractions = np.concatenate(
        [np.exp(-tau)[None], (share * tau_glass)[None], share[None] * tau_crystal]
    )
    sigma = st.probe_fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    if sigma > 0:
        fractions = np.stack(
            [ndimage.gaussian_filter(f, sigma, mode="nearest", truncate=5.0) for f in fractions]
        )
    fractions /= fractions.sum(axis=0, keepdims=True)
    return st.dose * fractions, relative, centres, radii


def _position_key(seed: int) -> np.ndarray:
    return np.random.SeedSequence(seed, spawn_key=(7,)).generate_state(2, dtype=np.uint64)


def _data_chunk(
    maps: np.ndarray,
    index: np.ndarray,
    patterns: np.ndarray,
    *,
    det_shape: tuple[int, int],
    key: np.ndarray,
    noise: bool,
    out_dtype: np.dtype,
) -> np.ndarray:
    """Counts of one block of positions, each from its own Philox stream."""
    by, bx = index.shape
    expected = np.einsum("syx,sp->yxp", maps, patterns)
    if not noise:
        return expected.astype(out_dtype).reshape(by, bx, *det_shape)
    out = np.empty((by, bx, patterns.shape[1]), dtype=out_dtype)
    for iy in range(by):
        for ix in range(bx):
            # the position in the counter's top word: streams never overlap
            counter = np.array([0, 0, 0, int(index[iy, ix])], dtype=np.uint64)
            rng = np.random.Generator(np.random.Philox(counter=counter, key=key))
            out[iy, ix] = rng.poisson(np.clip(expected[iy, ix], 0.0, None))
    return out.reshape(by, bx, *det_shape)


def _build(st: _Settings, chunk_shape: tuple[int, int]) -> xr.Dataset:
    import diffsims

    rng = np.random.default_rng(np.random.SeedSequence(st.seed, spawn_key=(1,)))
    ny, nx = st.scan
    qy, qx = st.detector
    dk = 2.0 * st.k_max_inv_nm / min(qy, qx)
    disc_px = bragg_disc_radius_inv_nm(st.beam_energy_kev, st.convergence_semiangle_mrad) / dk
    beam_centre = (qy // 2 + float(rng.uniform(-0.5, 0.5)), qx // 2 + float(rng.uniform(-0.5, 0.5)))

    beam = _soft_disc((qy, qx), *beam_centre, disc_px, st.disc_edge_px)
    matrix = _matrix_pattern(st, rng, beam_centre, dk, disc_px)
    crystals, phase_of, rotation, zones, phase_info = _crystal_patterns(
        st, rng, beam_centre, dk, disc_px
    )
    psf = detector_psf((qy, qx), st.psf_sigma_px, st.psf_tail, st.psf_tail_width_px)
    patterns = np.stack([_convolve_same(p, psf) for p in [beam, matrix, *crystals]])
    patterns /= patterns.sum(axis=(1, 2), keepdims=True)
    maps, relative, centres, radii = _maps(st, rng, st.precipitates)
    n_src = maps.shape[0]

    flat = patterns.reshape(n_src, -1)
    if st.noise:
        peak = st.dose * float(flat.max())
        bound = peak + 10.0 * math.sqrt(peak) + 10.0
        dtype = np.dtype(np.uint16) if bound < np.iinfo(np.uint16).max else np.dtype(np.uint32)
    else:
        dtype = np.dtype(np.float32)
    cy, cx = min(chunk_shape[0], ny), min(chunk_shape[1], nx)
    token = da.core.tokenize(st, chunk_shape)
    maps_da = da.from_array(maps, chunks=(n_src, cy, cx), name=f"kinematic-maps-{token}")
    index = da.from_array(
        np.arange(ny * nx, dtype=np.int64).reshape(ny, nx),
        chunks=(cy, cx),
        name=f"kinematic-index-{token}",
    )
    patterns_da = da.from_array(flat, chunks=-1, name=f"kinematic-patterns-{token}")
    data = da.blockwise(
        _data_chunk,
        "yxab",
        maps_da,
        "syx",
        index,
        "yx",
        patterns_da,
        "sp",
        new_axes={"a": qy, "b": qx},
        concatenate=True,
        dtype=dtype,
        meta=np.empty((0, 0, 0, 0), dtype=dtype),
        det_shape=(qy, qx),
        key=_position_key(st.seed),
        noise=st.noise,
        out_dtype=dtype,
        name=f"kinematic-scan-{token}",
    )

    nan = np.full(n_src, np.nan)
    centre_y, centre_x, radius, rot = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    centre_y[2:], centre_x[2:], radius[2:], rot[2:] = centres[:, 0], centres[:, 1], radii, rotation
    zone = np.full((n_src, 3), np.nan)
    zone[2:] = zones
    true_class = np.concatenate([[-1, -1], phase_of]).astype(np.int32)
    names = ["direct_beam", "matrix"] + [
        f"precipitate_{i}_{PHASES[int(p)].name}" for i, p in enumerate(phase_of)
    ]
    coords = {
        "scan_y": (
            "scan_y",
            (np.arange(ny) + 0.5) * st.scan_step_nm,
            {"units": "nm", "long_name": "scan position y"},
        ),
        "scan_x": (
            "scan_x",
            (np.arange(nx) + 0.5) * st.scan_step_nm,
            {"units": "nm", "long_name": "scan position x"},
        ),
        "k_y": (
            "k_y",
            (np.arange(qy) - qy // 2) * dk,
            {"units": "1/nm", "long_name": "scattering vector y"},
        ),
        "k_x": (
            "k_x",
            (np.arange(qx) - qx // 2) * dk,
            {"units": "1/nm", "long_name": "scattering vector x"},
        ),
        "source": ("source", np.arange(n_src), {"long_name": "ground-truth source"}),
    }
    variables = {
        "intensity": (
            ("scan_y", "scan_x", "k_y", "k_x"),
            data,
            {"units": "counts" if st.noise else "electrons"},
        ),
        "true_maps": (
            ("source", "scan_y", "scan_x"),
            maps.astype(np.float32),
            {"units": "electrons per position"},
        ),
        "true_patterns": (
            ("source", "k_y", "k_x"),
            patterns.astype(np.float32),
            {"units": "fraction of the pattern"},
        ),
        "true_class": (
            ("source",),
            true_class,
            {"description": "-1: direct beam or amorphous matrix; else phase index"},
        ),
        "true_centre_y": (("source",), centre_y, {"units": "nm"}),
        "true_centre_x": (("source",), centre_x, {"units": "nm"}),
        "true_radius": (("source",), radius, {"units": "nm"}),
        "true_rotation": (("source",), rot, {"units": "deg"}),
        "true_zone_axis": (("source", "uvw"), zone, {"description": "zone axis [uvw]"}),
        "true_thickness": (
            ("scan_y", "scan_x"),
            relative.astype(np.float32),
            {"units": "relative to film_thickness_nm"},
        ),
    }
    simulation = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(st).items()}
    attrs: dict[str, Any] = {
        "beam_energy_kev": st.beam_energy_kev,
        "convergence_semiangle_mrad": st.convergence_semiangle_mrad,
        "scan_step_nm": st.scan_step_nm,
        "probe_fwhm_nm": st.probe_fwhm_px * st.scan_step_nm,
        "wavelength_nm": electron_wavelength_nm(st.beam_energy_kev),
        "dose_e_per_pattern": st.dose,
        "beam_centre_px": list(beam_centre),
        "disc_radius_px": disc_px,
        "source": f"benchmarks.kinematic (diffsims {diffsims.__version__})",
        "schema_version": SCHEMA_VERSION,
        "source_names": names,
        "phases": phase_info,
        "simulation": simulation,
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write a kinematic scan to zarr with ``dask_stemnmf.save_4dstem``."""
    from dask_stemnmf.data import save_4dstem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="zarr store to write")
    parser.add_argument("--scan", default="48x48")
    parser.add_argument("--detector", default="64x64")
    parser.add_argument("--chunks", default="32x32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precipitates", type=int, default=8)
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--dose", type=float, default=4000.0)
    parser.add_argument("--probe-fwhm-px", type=float, default=2.9)
    parser.add_argument("--scan-step-nm", type=float, default=0.3)
    parser.add_argument("--psf-sigma-px", type=float, default=1.0)
    parser.add_argument("--psf-tail", type=float, default=0.02)
    parser.add_argument("--random-zone-axes", action="store_true")
    parser.add_argument("--no-noise", action="store_true", help="store the float32 expectation")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    def pair(text: str) -> tuple[int, int]:
        a, _, b = text.lower().partition("x")
        return int(a), int(b or a)

    start = time.perf_counter()
    ds = kinematic_scan(
        seed=args.seed,
        scan=pair(args.scan),
        detector=pair(args.detector),
        precipitates=args.precipitates,
        phases=args.phases,
        dose=args.dose,
        probe_fwhm_px=args.probe_fwhm_px,
        scan_step_nm=args.scan_step_nm,
        psf_sigma_px=args.psf_sigma_px,
        psf_tail=args.psf_tail,
        random_zone_axes=args.random_zone_axes,
        noise=not args.no_noise,
        chunks=pair(args.chunks),
    )
    built = time.perf_counter() - start
    save_4dstem(ds, args.out, overwrite=args.overwrite)
    print(
        f"{args.out}: {args.scan} x {args.detector} {ds['intensity'].dtype}, "
        f"{ds.sizes['source']} sources; built in {built:.1f} s, "
        f"written in {time.perf_counter() - start - built:.1f} s"
    )


if __name__ == "__main__":
    main()
