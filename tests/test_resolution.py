"""The dose-limited resolution (binomial thinning, FRC) and the bright-field mask's extent."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest

from dask_stemnmf import ConstrainedNMF, simulate_scan
from dask_stemnmf._kernels.frc import (
    BASIS_SHARE,
    fourier_ring_correlation,
    frc_crossing,
    thinned_split,
    thinning_key,
    to_half_dose,
)
from dask_stemnmf._kernels.masks import bright_field_extent, find_bright_field_disc
from dask_stemnmf.errors import StemNMFWarning
from dask_stemnmf.nmf.init import leading_subspace
from dask_stemnmf.nmf.resolution import dose_limited_cutoff
from dask_stemnmf.nmf.stats import Transform


def test_thinned_parts_sum_to_the_counts_and_are_independent_poisson():
    rng = np.random.default_rng(0)
    lam = 40.0
    counts = rng.poisson(lam, size=(64, 4096)).astype(np.uint16)
    a, b, c = thinned_split(counts, np.arange(64), thinning_key(3))
    np.testing.assert_array_equal(a + b + c, counts.astype(np.float32))
    half = (1 - BASIS_SHARE) / 2
    for part, share in ((a, half), (b, half), (c, BASIS_SHARE)):
        assert part.mean() == pytest.approx(share * lam, rel=0.01)
        # thinning a Poisson variable gives a Poisson variable: variance equals the mean
        assert part.var() == pytest.approx(part.mean(), rel=0.03)
    for x, y in ((a, b), (a, c), (b, c)):
        assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 0.01
    # the same positions draw the same parts whatever the order of the rows (chunking)
    a2, _, _ = thinned_split(counts[::-1], np.arange(64)[::-1], thinning_key(3))
    np.testing.assert_array_equal(a2[::-1], a)


def test_frc_of_shared_signal_and_independent_noise():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :64]
    signal = np.sin(2 * np.pi * 0.05 * xx) * np.cos(2 * np.pi * 0.04 * yy)
    a = signal + 0.05 * rng.normal(size=signal.shape)
    b = signal + 0.05 * rng.normal(size=signal.shape)
    noise_a, noise_b = rng.normal(size=(2, 64, 64))
    freq, frc, n, pooled = fourier_ring_correlation(
        np.stack([a, noise_a]), np.stack([b, noise_b])
    )
    near = np.argmin(np.abs(freq - np.hypot(0.05, 0.04)))
    assert frc[0, near] > 0.9  # the shared signal's ring
    # independent noise correlates at no frequency: within 4 / sqrt(n) of 0 in each ring
    assert (np.abs(frc[1]) < 4 / np.sqrt(n)).mean() > 0.95
    assert pooled.shape == freq.shape and n.sum() == 64 * 64 - 1
    # a curve above the threshold up to 0.2 and below it after crosses at 0.2
    curve = np.where(freq <= 0.2, 0.9, 0.0)
    assert frc_crossing(freq, curve, n) == pytest.approx(0.2, abs=1.0 / 64)
    # scaling to halves of all the counts raises a correlation, never past 1
    assert to_half_dose(np.array([0.5]))[0] > 0.5 and to_half_dose(np.array([0.999]))[0] < 1


def test_dose_limited_resolution_finds_a_simulated_band_limit():
    """At a dose where the signal reaches the band limit, the FRC finds it within 20 %."""
    fwhm_px = 4.5
    ds = simulate_scan(
        scan=(48, 48), detector=(32, 32), precipitates=10, phases=2, dose=1e5, seed=3,
        chunks=(24, 48), probe_fwhm_nm=0.3 * fwhm_px, precipitate_diameter_nm=(2, 4),
    ).persist()  # fmt: skip
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore", StemNMFWarning)
        used = ConstrainedNMF(1, max_iter=1, diffraction_continuity=False,
                              map_resolution_nm=None).fit(ds).result_["fit_mask"].values
        sub = leading_subspace(
            ds["intensity"].data, 8, 0, Transform(pixels=np.flatnonzero(used)), counts=True
        )
        found = dose_limited_cutoff(sub)["cutoff_cycles_per_px"]
    band = 1.028 / fwhm_px  # the Airy probe's incoherent cutoff, cycles per scan pixel
    assert abs(found - band) < 0.2 * band, (found, band)


def test_low_dose_limits_the_maps_below_the_probe():
    ds = simulate_scan(
        scan=(32, 32), detector=(32, 32), precipitates=4, phases=2, dose=300, seed=2,
        chunks=(16, 32),
    ).persist()  # fmt: skip
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ConstrainedNMF(6, max_iter=12).fit(ds).result_
    res = r.attrs["map_resolution"]
    assert res["dose_cycles_per_px"] < res["probe_cycles_per_px"]
    assert res["source"] == "dose"
    assert r.attrs["map_cutoff_cycles_per_px"] == pytest.approx(res["dose_cycles_per_px"])


def test_without_a_probe_calibration_the_dose_limit_is_used_with_a_note():
    ds = simulate_scan(scan=(24, 24), detector=(24, 24), precipitates=3, seed=4, chunks=(12, 24))
    ds = ds.persist()
    for key in ("probe_fwhm_nm", "beam_energy_kev", "convergence_semiangle_mrad"):
        ds.attrs[key] = float("nan")
    with dask.config.set(scheduler="synchronous"):
        with pytest.warns(StemNMFWarning, match="no probe calibration"):
            r = ConstrainedNMF(4, max_iter=12, diffraction_continuity=False).fit(ds).result_
    assert r.attrs["map_resolution"]["source"] == "dose"
    assert 0 < r.attrs["map_cutoff_cycles_per_px"] < 0.71
    assert any("no probe calibration" in n for n in r.attrs["notes"])


@pytest.mark.parametrize(
    ("psf", "edge", "lowest", "highest"),
    [((0.0, 0.0), 0.0, 1.0, 1.6), ((0.6, 0.03), 0.4, 1.6, 2.6), ((1.0, 0.1), 1.0, 2.2, 3.0)],
)
def test_bright_field_mask_reaches_the_end_of_the_beams_tail(psf, edge, lowest, highest):
    """The mask grows with the disc's soft edge and the detector's tail, in disc radii."""
    ds = simulate_scan(
        scan=(8, 8), detector=(64, 64), precipitates=1, seed=1, noise=False,
        psf_sigma_px=psf[0], psf_tail=psf[1], disc_edge_px=edge,
    )  # fmt: skip
    mean = ds["intensity"].values.mean(axis=(0, 1))
    cy, cx, r = find_bright_field_disc(mean)
    extent = bright_field_extent(mean, cy, cx, r)
    assert lowest * r <= extent <= highest * r, extent / r
    # just beyond the extent the beam's tail is small next to the scattered intensity
    weights = ds["true_maps"].values.mean(axis=(1, 2))
    parts = weights[:, None, None] * ds["true_patterns"].values
    yy, xx = np.indices(mean.shape)
    ring = np.abs(np.hypot(yy - cy, xx - cx) - (extent + 1.0)) < 0.5
    assert parts[0][ring].mean() < 0.5 * parts[1:].sum(axis=0)[ring].mean()
