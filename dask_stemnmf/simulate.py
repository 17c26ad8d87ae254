"""Synthetic 4D-STEM scans with ground truth: crystalline precipitates in a metallic glass.

The model, per scan position ``p`` with dose ``D`` electrons per pattern:

- a film of relative thickness ``tau(p)`` (smooth, a few low DCT modes) scatters a fraction
  ``s(p) = 1 - (1 - s0)**tau(p)`` of the beam; the rest stays in the direct-beam disc;
- a precipitate ``i`` (a sphere of radius ``R_i``) replaces a fraction ``f_i(p)`` of the film
  column (its projected thickness over the film thickness, seen through the probe) and
  scatters ``crystal_contrast`` times more strongly into its Bragg discs;
- maps (electrons per position): precipitate ``D s kappa f_i``, amorphous matrix
  ``D s (1 - sum f)``, direct beam the remainder, so every pattern holds ``D`` electrons;
- patterns (each summing to 1): the direct-beam disc (radius ``alpha / lambda``, a sub-pixel
  off-centre position), the amorphous halo (two diffuse rings on a decaying background, the
  look of the real ``Amorphous.hspy``) and, per precipitate, its phase's zone-axis lattice
  of Bragg discs rotated by the precipitate's own in-plane angle;
- discs have soft (Gaussian-blurred) edges and every pattern is seen through the detector's
  point-spread function (a Gaussian core and a long power-law tail), as on real detectors;
- the probe is an Airy probe: maps are blurred by its incoherent transfer function and are
  band-limited to ``q_c = 1.028 / FWHM`` (``2 alpha / lambda`` for a given semi-angle);
- counts are Poisson (plus optional Gaussian dark noise), drawn per position from its own
  random stream, so the data are identical whatever the chunking.

Only a few numbers are drawn up front (patterns, precipitate centres, sizes, rotations and
phases, the thickness modes); maps and data are produced chunk by chunk from them, so memory
stays bounded by the chunk size whatever the scan size, and the task graph stays small.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ._kernels.noise import noisy_block
from ._kernels.render import (
    add_disc,
    bandlimited_sphere_window,
    convolve_same,
    detector_psf,
    gaussian_kernel,
    radial_profile_image,
)
from ._version import __version__
from .data import save_4dstem
from .errors import InputError
from .physics import bragg_disc_radius_inv_nm, electron_wavelength_nm
from .physics import probe_fwhm_nm as airy_probe_fwhm_nm
from .schema import SCHEMA_VERSION

__all__ = ["LATTICES", "Phase", "simulate_scan"]

#: Zone-axis reciprocal lattices cycled through by phase index:
#: (name, ratio |b*|/|a*| range, angle between a* and b* in degrees).
LATTICES: tuple[tuple[str, tuple[float, float], float], ...] = (
    ("hexagonal", (1.0, 1.0), 60.0),
    ("square", (1.0, 1.0), 90.0),
    ("rectangular", (1.35, 1.6), 90.0),
    ("oblique", (1.15, 1.3), 75.0),
    ("rhombic", (1.0, 1.0), 70.0),
)


@dataclass(frozen=True)
class Phase:
    """A crystalline phase seen on a zone axis: a 2-D reciprocal lattice.

    Attributes
    ----------
    lattice
        Lattice type (see :data:`LATTICES`).
    a_star, b_star
        Lengths of the reciprocal basis vectors in 1/nm.
    gamma_deg
        Angle between them in degrees.
    debye_waller_nm2
        ``B`` of the ``exp(-B g^2)`` fall-off of spot intensity, nm^2.
    shell_seed
        Seed of the per-shell intensity factors (spots at equal ``|g|`` share one).
    """

    lattice: str
    a_star: float
    b_star: float
    gamma_deg: float
    debye_waller_nm2: float
    shell_seed: int


def _parse_pair(value: int | tuple[int, int] | str, name: str) -> tuple[int, int]:
    if isinstance(value, str):
        parts = value.lower().split("x")
        try:
            pair = tuple(int(p) for p in parts)
        except ValueError:
            raise InputError(f"{name}={value!r} is not of the form NxM, e.g. 128x128") from None
    elif isinstance(value, int | np.integer):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise InputError(f"{name}={value!r} must be two positive sizes, e.g. 128x128")
    return pair[0], pair[1]


def _make_phases(n: int, rng: np.random.Generator) -> list[Phase]:
    phases = []
    for j in range(n):
        name, ratio, gamma = LATTICES[j % len(LATTICES)]
        a_star = float(rng.uniform(2.7, 3.9))
        b_star = a_star * float(rng.uniform(*ratio))
        phases.append(
            Phase(
                name,
                a_star,
                b_star,
                gamma,
                float(rng.uniform(0.02, 0.04)),
                int(rng.integers(2**31)),
            )
        )
    return phases


def _lattice_spots(phase: Phase, k_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Spot positions ``(n, 2)`` in 1/nm (unrotated, y-x order) and intensities ``(n,)``."""
    gamma = math.radians(phase.gamma_deg)
    a = np.array([0.0, phase.a_star])
    b = np.array([phase.b_star * math.sin(gamma), phase.b_star * math.cos(gamma)])
    hmax = int(math.ceil(k_limit / min(phase.a_star, phase.b_star) / max(math.sin(gamma), 0.3)))
    h, k = np.meshgrid(np.arange(-hmax, hmax + 1), np.arange(-hmax, hmax + 1), indexing="ij")
    g = h.reshape(-1, 1) * a + k.reshape(-1, 1) * b
    length = np.hypot(g[:, 0], g[:, 1])
    keep = (length > 1e-9) & (length <= k_limit)
    g, length = g[keep], length[keep]
    shells, inverse = np.unique(np.round(length, 4), return_inverse=True)
    factors = np.random.default_rng(phase.shell_seed).uniform(0.25, 1.0, shells.size)
    intensity = np.exp(-phase.debye_waller_nm2 * length**2) * factors[inverse]
    return g, intensity


def _halo_profile(k: np.ndarray, k1: float) -> np.ndarray:
    """Amorphous scattering versus k (1/nm): two diffuse rings on a decaying background."""
    ring1 = np.exp(-0.5 * ((k - k1) / (0.23 * k1)) ** 2)
    ring2 = 0.3 * np.exp(-0.5 * ((k - 1.75 * k1) / (0.3 * k1)) ** 2)
    background = 0.45 * np.exp(-k / 6.0)
    return ring1 + ring2 + background


_THICKNESS_MODES = ((1, 0), (0, 1), (1, 1), (2, 1), (1, 2))


def _thickness_modes(variation: float, rng: np.random.Generator) -> np.ndarray:
    """Draw the amplitudes of the low DCT modes of the thickness; its range is +-variation.

    The scale comes from the continuous field sampled on a fine grid (the modes are slow),
    so it does not depend on the scan size or the chunking.
    """
    amps = rng.normal(size=len(_THICKNESS_MODES))
    u = (np.arange(256) + 0.5) / 256
    peak = np.abs(_modes_on(amps, u, u)).max()
    return amps * (variation / peak if peak > 0 else 0.0)


def _modes_on(amps: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate the thickness modes at fractional positions ``y`` (rows) and ``x`` (columns)."""
    field = np.zeros((y.size, x.size))
    for amp, (my, mx) in zip(amps, _THICKNESS_MODES, strict=True):
        field += amp * np.cos(np.pi * my * y)[:, None] * np.cos(np.pi * mx * x)[None, :]
    return field


@dataclass(frozen=True, eq=False)
class _MapModel:
    """Everything needed to compute the maps of any block of scan positions (a few kB)."""

    scan: tuple[int, int]
    step: float
    dose: float
    scattered_fraction: float
    crystal_contrast: float
    film_thickness: float
    cutoff: float
    centres_px: np.ndarray  # (n, 2) precipitate centres in pixels (pixel i spans [i, i + 1))
    radii: np.ndarray  # (n,) nm
    window: np.ndarray  # (n,) window side in pixels
    origin: np.ndarray  # (n, 2) window origin in pixels
    thickness_modes: np.ndarray

    @property
    def n_sources(self) -> int:
        return 2 + self.radii.size

    def thickness(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Relative thickness ``(y1 - y0, x1 - x0)`` of a block."""
        ny, nx = self.scan
        y = (np.arange(y0, y1) + 0.5) / ny
        x = (np.arange(x0, x1) + 0.5) / nx
        return 1.0 + _modes_on(self.thickness_modes, y, x)

    def maps(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Return the maps ``(source, y1 - y0, x1 - x0)`` in electrons per position, float64.

        Each precipitate's probe-blurred occupancy comes from its own fixed window, so a
        position's value does not depend on the block that holds it.
        """
        n = self.radii.size
        occupancy = np.zeros((n, y1 - y0, x1 - x0))
        for i in range(n):
            oy, ox = (int(v) for v in self.origin[i])
            size = int(self.window[i])
            ya, yb = max(oy, y0), min(oy + size, y1)
            xa, xb = max(ox, x0), min(ox + size, x1)
            if ya >= yb or xa >= xb:
                continue
            cy, cx = self.centres_px[i] - 0.5 - self.origin[i]
            win = bandlimited_sphere_window(size, cy, cx, self.radii[i], self.step, self.cutoff)
            occupancy[i, ya - y0 : yb - y0, xa - x0 : xb - x0] = (
                win[ya - oy : yb - oy, xa - ox : xb - ox] / self.film_thickness
            )
        total = occupancy.sum(axis=0)
        over = total > 0.9
        if over.any():
            occupancy *= np.where(over, 0.9 / np.maximum(total, 1e-12), 1.0)
        scattered = 1.0 - (1.0 - self.scattered_fraction) ** self.thickness(y0, y1, x0, x1)
        precip = self.dose * scattered * self.crystal_contrast * occupancy
        matrix = self.dose * scattered * (1.0 - occupancy.sum(axis=0))
        beam = np.clip(self.dose - matrix - precip.sum(axis=0), 0.0, None)
        return np.concatenate([beam[None], matrix[None], precip])


def _place_precipitates(
    n: int,
    field_nm: tuple[float, float],
    diameter_nm: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(n, 2)`` in nm and radii ``(n,)`` in nm; every fourth overlaps an earlier one."""
    largest = 0.4 * min(field_nm)
    radii = 0.5 * np.minimum(rng.uniform(*diameter_nm, size=n), largest)
    centres = np.zeros((n, 2))
    for i in range(n):
        r = radii[i]
        lo = np.array([r, r])
        hi = np.array(field_nm) - r
        if i % 4 == 3:
            j = int(rng.integers(i))
            angle = rng.uniform(0, 2 * np.pi)
            dist = 0.75 * (r + radii[j])
            centres[i] = np.clip(
                centres[j] + dist * np.array([np.sin(angle), np.cos(angle)]), lo, hi
            )
            continue
        best, best_gap = lo, -np.inf
        for _ in range(200):
            cand = rng.uniform(lo, hi)
            gap = np.min(np.hypot(*(centres[:i] - cand).T) - 1.1 * (radii[:i] + r)) if i else 1.0
            if gap > best_gap:
                best, best_gap = cand, gap
            if gap > 0:
                break
        centres[i] = best
    return centres, radii


def _int_dtype(max_expected: float, dark_noise: float) -> np.dtype:
    bound = max_expected + 10.0 * math.sqrt(max_expected) + 10.0 + 8.0 * dark_noise
    return np.dtype(np.uint16) if bound < np.iinfo(np.uint16).max else np.dtype(np.uint32)


@dataclass(frozen=True)
class _Settings:
    seed: int
    scan: tuple[int, int]
    detector: tuple[int, int]
    precipitates: int
    phases: int
    dose: float
    noise: bool
    dark_noise: float
    scan_step_nm: float
    beam_energy_kev: float
    convergence_semiangle_mrad: float
    probe_fwhm_nm: float
    k_max_inv_nm: float
    precipitate_diameter_nm: tuple[float, float]
    film_thickness_nm: float
    scattered_fraction: float
    thickness_variation: float
    crystal_contrast: float
    halo_k_inv_nm: float
    disc_edge_px: float
    psf_sigma_px: float
    psf_tail: float
    psf_tail_width_px: float


def simulate_scan(
    store: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    scan: int | tuple[int, int] | str = (128, 128),
    detector: int | tuple[int, int] | str = (128, 128),
    precipitates: int = 12,
    phases: int = 3,
    dose: float = 5000.0,
    noise: bool = True,
    dark_noise: float = 0.0,
    scan_step_nm: float = 0.3,
    beam_energy_kev: float = 200.0,
    convergence_semiangle_mrad: float = 1.5,
    probe_fwhm_nm: float | None = None,
    k_max_inv_nm: float = 6.4,
    precipitate_diameter_nm: tuple[float, float] = (1.0, 5.0),
    film_thickness_nm: float = 20.0,
    scattered_fraction: float = 0.4,
    thickness_variation: float = 0.15,
    crystal_contrast: float = 2.0,
    halo_k_inv_nm: float = 4.0,
    disc_edge_px: float = 0.4,
    psf_sigma_px: float = 0.6,
    psf_tail: float = 0.03,
    psf_tail_width_px: float = 2.0,
    chunks: int | tuple[int, int] | str = (32, 32),
    overwrite: bool = False,
) -> xr.Dataset:
    """Simulate a nanobeam 4D-STEM scan of crystalline precipitates in a metallic glass.

    See the module docstring for the physical model. The ground truth sits in the same
    dataset: ``true_maps (source, scan_y, scan_x)`` in electrons per position,
    ``true_patterns (source, k_y, k_x)`` each summing to 1, ``true_class (source)`` (-1 for
    the direct beam, source 0, and the amorphous matrix, source 1; the phase index for each
    precipitate), precipitate ``true_centre_y``/``true_centre_x`` (nm), ``true_radius`` (nm),
    ``true_rotation`` (degrees from ``+k_x`` toward ``+k_y``; NaN for the non-precipitate
    sources) and ``true_thickness``
    (relative, ``(scan_y, scan_x)``).

    Parameters
    ----------
    store
        Where to write the scan (zarr, atomically, chunk by chunk). ``None`` returns a lazy
        in-memory dataset instead.
    seed
        Seed of everything random; the output is identical for a seed whatever ``chunks``.
    scan, detector
        ``(ny, nx)`` scan positions and ``(ky, kx)`` detector pixels (or ``"128x128"``).
    precipitates, phases
        Number of precipitates and of crystalline phases (precipitates are spread over the
        phases so that several share one).
    dose
        Electrons per pattern (expected counts summed over the detector).
    noise
        Poisson counting noise (integer counts); ``False`` stores the float32 expectation.
    dark_noise
        Standard deviation of Gaussian detector noise in counts, rounded and clipped at 0.
    scan_step_nm
        Scan step in nm.
    beam_energy_kev, convergence_semiangle_mrad
        Beam energy (keV) and probe semi-angle (mrad): set the disc radius ``alpha/lambda``.
    probe_fwhm_nm
        Probe FWHM in nm; default the Airy probe of the semi-angle, ``0.514 lambda / alpha``.
    k_max_inv_nm
        Half-width of the detector in 1/nm (sets the detector's pixel size).
    precipitate_diameter_nm
        Range of precipitate diameters in nm.
    film_thickness_nm
        Film thickness in nm (a precipitate replaces its projected thickness of it).
    scattered_fraction
        Fraction of the beam the film scatters at mean thickness (the rest stays in the
        direct beam, which therefore carries most of the counts).
    thickness_variation
        Relative amplitude of the smooth thickness variation across the scan.
    crystal_contrast
        How much more strongly a crystal scatters than the same volume of glass.
    halo_k_inv_nm
        Radius of the first amorphous halo ring in 1/nm.
    disc_edge_px
        Softness of the disc edges (direct beam and Bragg discs): the standard deviation, in
        detector pixels, of a Gaussian the discs are blurred with (defocus, partial
        coherence, aberrations). 0 gives sharp, anti-aliased discs.
    psf_sigma_px, psf_tail, psf_tail_width_px
        The detector's point-spread function applied to every pattern: a Gaussian core of
        ``psf_sigma_px`` pixels and a fraction ``psf_tail`` of the counts in a power-law tail
        ``(1 + r^2 / w^2)^(-3/2)`` of width ``psf_tail_width_px`` (every real pixel detector
        has one; the direct beam's tail then reaches far into the scattered intensity).
        Counts spread off the detector are lost. ``0, 0`` is a perfect detector.
    chunks
        Scan chunks ``(cy, cx)`` of the data (and of the store).
    overwrite
        Replace an existing ``store``.

    Returns
    -------
    xarray.Dataset
        The scan (opened from ``store`` when one is given).
    """
    scan_shape = _parse_pair(scan, "scan")
    det_shape = _parse_pair(detector, "detector")
    chunk_shape = _parse_pair(chunks, "chunks")
    if precipitates < 0 or phases < 1:
        raise InputError("precipitates must be >= 0 and phases >= 1")
    if not dose > 0:
        raise InputError(f"dose must be positive (electrons per pattern), got {dose}")
    for name, value in (
        ("scan_step_nm", scan_step_nm),
        ("beam_energy_kev", beam_energy_kev),
        ("convergence_semiangle_mrad", convergence_semiangle_mrad),
        ("k_max_inv_nm", k_max_inv_nm),
        ("film_thickness_nm", film_thickness_nm),
    ):
        if not value > 0:
            raise InputError(f"{name} must be positive, got {value}")
    if not 0 < scattered_fraction < 1:
        raise InputError(f"scattered_fraction must lie in (0, 1), got {scattered_fraction}")
    if dark_noise < 0:
        raise InputError(f"dark_noise must be >= 0, got {dark_noise}")
    for name, value in (
        ("disc_edge_px", disc_edge_px),
        ("psf_sigma_px", psf_sigma_px),
        ("psf_tail", psf_tail),
    ):
        if not value >= 0:
            raise InputError(f"{name} must be >= 0, got {value}")
    if not psf_tail < 1 or not psf_tail_width_px > 0:
        raise InputError("psf_tail must lie in [0, 1) and psf_tail_width_px must be positive")
    fwhm = probe_fwhm_nm or airy_probe_fwhm_nm(beam_energy_kev, convergence_semiangle_mrad)
    settings = _Settings(
        int(seed),
        scan_shape,
        det_shape,
        int(precipitates),
        int(phases),
        float(dose),
        bool(noise),
        float(dark_noise),
        float(scan_step_nm),
        float(beam_energy_kev),
        float(convergence_semiangle_mrad),
        float(fwhm),
        float(k_max_inv_nm),
        (float(precipitate_diameter_nm[0]), float(precipitate_diameter_nm[1])),
        float(film_thickness_nm),
        float(scattered_fraction),
        float(thickness_variation),
        float(crystal_contrast),
        float(halo_k_inv_nm),
        float(disc_edge_px),
        float(psf_sigma_px),
        float(psf_tail),
        float(psf_tail_width_px),
    )
    ds = _build(settings, chunk_shape)
    if store is None:
        return ds
    from .data import open_4dstem

    save_4dstem(ds, store, overwrite=overwrite)
    return open_4dstem(store, chunks=None)


def _build(st: _Settings, chunk_shape: tuple[int, int]) -> xr.Dataset:
    ss = np.random.SeedSequence(st.seed)
    layout_seed, noise_seed = ss.spawn(2)
    rng = np.random.default_rng(layout_seed)
    ny, nx = st.scan
    qy, qx = st.detector
    dk = 2.0 * st.k_max_inv_nm / min(qy, qx)
    disc_px = bragg_disc_radius_inv_nm(st.beam_energy_kev, st.convergence_semiangle_mrad) / dk
    beam_centre = (qy // 2 + rng.uniform(-0.5, 0.5), qx // 2 + rng.uniform(-0.5, 0.5))

    # Patterns (source, qy, qx): direct beam, amorphous matrix, then one per precipitate.
    beam = np.zeros((qy, qx))
    add_disc(beam, *beam_centre, disc_px, 1.0)
    radial_step = 0.25
    k_samples = np.arange(0, math.hypot(qy, qx) / radial_step + 2) * radial_step * dk
    halo = radial_profile_image(
        (qy, qx), *beam_centre, _halo_profile(k_samples, st.halo_k_inv_nm), radial_step
    )
    phase_list = _make_phases(st.phases, rng)
    k_limit = math.hypot(qy, qx) * dk / 2 + disc_px * dk
    spots = [_lattice_spots(ph, k_limit) for ph in phase_list]

    order = rng.permutation(st.precipitates)
    phase_of = (np.arange(st.precipitates) % st.phases)[order]
    rotation = rng.uniform(0.0, 360.0, st.precipitates)
    field = (ny * st.scan_step_nm, nx * st.scan_step_nm)
    centres, radii = _place_precipitates(st.precipitates, field, st.precipitate_diameter_nm, rng)

    patterns = [beam, halo]
    for i in range(st.precipitates):
        g, intensity = spots[phase_of[i]]
        theta = math.radians(rotation[i])
        # (y, x) rows: counter-clockwise from +k_x toward +k_y, the polar transform's sense
        rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
        gy, gx = (g @ rot.T).T / dk
        image = np.zeros((qy, qx))
        for y, x, w in zip(gy, gx, intensity, strict=True):
            add_disc(image, beam_centre[0] + y, beam_centre[1] + x, disc_px, w)
        patterns.append(image)
    pattern_arr = _through_optics(np.stack(patterns), st)
    sums = pattern_arr.sum(axis=(1, 2), keepdims=True)
    pattern_arr = pattern_arr / np.where(sums > 0, sums, 1.0)

    # Maps (source, ny, nx) in electrons per position, computed block by block.
    pad = math.ceil(12 * st.probe_fwhm_nm / st.scan_step_nm)
    centres_px = centres / st.scan_step_nm
    window = np.array(
        [1 << math.ceil(math.log2(2 * r / st.scan_step_nm + 2 * pad + 4)) for r in radii], dtype=int
    ).reshape(-1)
    origin = np.round(centres_px - 0.5).astype(int) - window[:, None] // 2
    model = _MapModel(
        scan=(ny, nx),
        step=st.scan_step_nm,
        dose=st.dose,
        scattered_fraction=st.scattered_fraction,
        crystal_contrast=st.crystal_contrast,
        film_thickness=st.film_thickness_nm,
        cutoff=1.028 / st.probe_fwhm_nm,
        centres_px=centres_px.reshape(-1, 2),
        radii=radii,
        window=window,
        origin=origin.reshape(-1, 2),
        thickness_modes=_thickness_modes(st.thickness_variation, rng),
    )
    n_src = model.n_sources
    cy_, cx_ = min(chunk_shape[0], ny), min(chunk_shape[1], nx)
    token = da.core.tokenize(st, chunk_shape)
    maps_da = da.map_blocks(
        _maps_chunk,
        chunks=(
            (n_src,),
            da.core.normalize_chunks(cy_, (ny,))[0],
            da.core.normalize_chunks(cx_, (nx,))[0],
        ),
        dtype=np.float64,
        meta=np.empty((0, 0, 0)),
        model=model,
        name=f"simulate-maps-{token}",
    )
    thickness_da = da.map_blocks(
        _thickness_chunk,
        chunks=maps_da.chunks[1:],
        dtype=np.float64,
        meta=np.empty((0, 0)),
        model=model,
        name=f"simulate-thickness-{token}",
    )

    # Data, chunk by chunk. Every map is at most the dose, and the maps sum to the dose.
    flat_patterns = pattern_arr.reshape(pattern_arr.shape[0], -1)
    if st.noise:
        dtype = _int_dtype(st.dose * float(flat_patterns.max()), st.dark_noise)
    else:
        dtype = np.dtype(np.float32)
    patterns_da = da.from_array(flat_patterns, chunks=-1, name=f"simulate-patterns-{token}")
    index = da.arange(ny * nx, dtype=np.int64, chunks=ny * nx).reshape(ny, nx).rechunk((cy_, cx_))
    key = noise_seed.generate_state(2, dtype=np.uint64)
    data = da.blockwise(
        _simulate_chunk,
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
        key=key,
        dark_noise=st.dark_noise,
        out_dtype=dtype,
        name=f"simulate-scan-{token}",
    )

    nan_src = np.full(n_src, np.nan)
    centre_y, centre_x, radius, rot = nan_src.copy(), nan_src.copy(), nan_src.copy(), nan_src.copy()
    centre_y[2:], centre_x[2:] = centres[:, 0], centres[:, 1]
    radius[2:], rot[2:] = radii, rotation
    true_class = np.concatenate([[-1, -1], phase_of]).astype(np.int32)
    source_names = ["direct_beam", "matrix"] + [f"precipitate_{i}" for i in range(st.precipitates)]

    scan_y = (np.arange(ny) + 0.5) * st.scan_step_nm
    scan_x = (np.arange(nx) + 0.5) * st.scan_step_nm
    k_y = (np.arange(qy) - qy // 2) * dk
    k_x = (np.arange(qx) - qx // 2) * dk
    coords = {
        "scan_y": ("scan_y", scan_y, {"units": "nm", "long_name": "scan position y"}),
        "scan_x": ("scan_x", scan_x, {"units": "nm", "long_name": "scan position x"}),
        "k_y": ("k_y", k_y, {"units": "1/nm", "long_name": "scattering vector y"}),
        "k_x": ("k_x", k_x, {"units": "1/nm", "long_name": "scattering vector x"}),
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
            maps_da.astype(np.float32),
            {"units": "electrons per position"},
        ),
        "true_patterns": (
            ("source", "k_y", "k_x"),
            pattern_arr.astype(np.float32),
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
        "true_thickness": (
            ("scan_y", "scan_x"),
            thickness_da.astype(np.float32),
            {"units": "relative to film_thickness_nm"},
        ),
    }
    attrs: dict[str, Any] = {
        "beam_energy_kev": st.beam_energy_kev,
        "convergence_semiangle_mrad": st.convergence_semiangle_mrad,
        "scan_step_nm": st.scan_step_nm,
        "probe_fwhm_nm": st.probe_fwhm_nm,
        "wavelength_nm": electron_wavelength_nm(st.beam_energy_kev),
        "dose_e_per_pattern": st.dose,
        "beam_centre_px": list(beam_centre),
        "source": f"dask_stemnmf.simulate_scan {__version__}",
        "schema_version": SCHEMA_VERSION,
        "source_names": source_names,
        "phases": [asdict(p) for p in phase_list],
        "simulation": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(st).items()},
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _through_optics(patterns: np.ndarray, st: _Settings) -> np.ndarray:
    """Soften the discs (every source but the halo, source 1), then the detector's PSF.

    Parameters
    ----------
    patterns
        ``(source, k_y, k_x)`` ideal patterns.
    st
        The settings (``disc_edge_px``, ``psf_*``).

    Returns
    -------
    numpy.ndarray
        ``(source, k_y, k_x)`` as recorded (before the counting noise).
    """
    out = patterns.copy()
    if st.disc_edge_px > 0:
        edge = gaussian_kernel(st.disc_edge_px)
        for s in (0, *range(2, out.shape[0])):
            out[s] = convolve_same(out[s], edge)
    if st.psf_sigma_px > 0 or st.psf_tail > 0:
        qy, qx = out.shape[1:]
        psf = detector_psf(
            (2 * qy + 1, 2 * qx + 1), st.psf_sigma_px, st.psf_tail, st.psf_tail_width_px
        )
        for s in range(out.shape[0]):
            out[s] = convolve_same(out[s], psf)
    return out


def _maps_chunk(*, model: _MapModel, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    assert block_info is not None  # dask passes it
    (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    return model.maps(y0, y1, x0, x1)


def _thickness_chunk(*, model: _MapModel, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    assert block_info is not None  # dask passes it
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    return model.thickness(y0, y1, x0, x1)


def _simulate_chunk(
    maps: np.ndarray,
    index: np.ndarray,
    patterns: np.ndarray,
    *,
    det_shape: tuple[int, int],
    key: np.ndarray,
    dark_noise: float,
    out_dtype: np.dtype,
) -> np.ndarray:
    block = noisy_block(maps, patterns, index, key, dark_noise, out_dtype)
    return block.reshape(block.shape[0], block.shape[1], *det_shape)
