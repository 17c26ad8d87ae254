"""The independent diffsims-based generator of validation scans (benchmarks/kinematic.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("diffsims", reason="the kinematic generator needs the validation extra")

from benchmarks.kinematic import (
    PHASES,
    amorphous_intensity,
    detector_psf,
    kinematic_scan,
    main,
    zone_axis_spots,
)
from dask_stemnmf import open_4dstem
from dask_stemnmf.physics import bragg_disc_radius_inv_nm
from dask_stemnmf.schema import validate_dataset

SMALL = {"scan": (16, 20), "detector": (48, 48), "precipitates": 6, "phases": 2}


@pytest.fixture(scope="module")
def clean():
    return kinematic_scan(seed=3, noise=False, chunks=(7, 9), **SMALL)


@pytest.fixture(scope="module")
def noisy():
    return kinematic_scan(seed=3, chunks=(16, 20), **SMALL)


def test_data_model_shapes_and_calibration(noisy):
    ds = noisy
    assert validate_dataset(ds) == ("k_y", "k_x")
    assert ds["intensity"].dims == ("scan_y", "scan_x", "k_y", "k_x")
    assert ds["intensity"].shape == (16, 20, 48, 48)
    assert ds["intensity"].dtype == np.uint16
    n_src = 2 + SMALL["precipitates"]
    assert ds.sizes["source"] == n_src
    assert ds["true_maps"].dims == ("source", "scan_y", "scan_x")
    assert ds["true_patterns"].dims == ("source", "k_y", "k_x")
    for name in ("true_class", "true_centre_y", "true_centre_x", "true_radius", "true_rotation"):
        assert ds[name].dims == ("source",)
    assert list(ds["true_class"].values[:2]) == [-1, -1]
    assert set(ds["true_class"].values[2:]) == {0, 1}
    assert np.isnan(ds["true_rotation"].values[:2]).all()
    assert np.isfinite(ds["true_rotation"].values[2:]).all()
    for dim, unit in (("scan_y", "nm"), ("scan_x", "nm"), ("k_y", "1/nm"), ("k_x", "1/nm")):
        assert ds[dim].attrs["units"] == unit
    for attr in ("beam_energy_kev", "convergence_semiangle_mrad", "scan_step_nm", "probe_fwhm_nm"):
        assert ds.attrs[attr] > 0
    assert ds.attrs["probe_fwhm_nm"] == pytest.approx(2.9 * 0.3)
    dk = float(ds["k_x"][1] - ds["k_x"][0])
    disc = bragg_disc_radius_inv_nm(200.0, 1.5) / dk
    assert ds.attrs["disc_radius_px"] == pytest.approx(disc)
    # every pattern holds the dose on average
    total = ds["intensity"].sum(("k_y", "k_x")).values
    assert total.mean() == pytest.approx(4000.0, rel=0.01)


def test_patterns_sum_to_one_and_noise_free_data_are_the_sum_of_the_sources(clean):
    tp = clean["true_patterns"].values.astype(np.float64)
    tm = clean["true_maps"].values.astype(np.float64)
    np.testing.assert_allclose(tp.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert tp.min() >= 0 and tm.min() >= 0
    np.testing.assert_allclose(tm.sum(axis=0), 4000.0, rtol=1e-5)
    data = clean["intensity"].values.astype(np.float64)
    want = np.einsum("syx,sab->yxab", tm, tp)
    np.testing.assert_allclose(data, want, rtol=1e-4, atol=1e-4 * want.max())


def test_the_direct_beam_is_a_soft_disc_and_the_matrix_a_halo(clean):
    tp = clean["true_patterns"].values.astype(np.float64)
    cy, cx = clean.attrs["beam_centre_px"]
    disc = clean.attrs["disc_radius_px"]
    yy, xx = np.indices(tp.shape[1:])
    rho = np.hypot(yy - cy, xx - cx)
    beam = tp[0]
    assert beam[rho < 0.5 * disc].min() > 0.5 * beam.max()
    assert beam[rho > 3 * disc].max() < 0.01 * beam.max()  # only the PSF's tail out there
    assert beam[rho > 3 * disc].min() > 0  # ... which is long
    # soft edge: intermediate values across the rim
    rim = beam[(rho > disc - 1) & (rho < disc + 1)]
    assert ((rim > 0.1 * beam.max()) & (rim < 0.9 * beam.max())).any()
    # matrix: inelastic scattering peaked on the beam, then a ring near 4.3 1/nm (Cu-Zr glass)
    dk = float(clean["k_x"][1] - clean["k_x"][0])
    k = rho * dk
    profile = [tp[1][(k > a) & (k < a + 0.4)].mean() for a in np.arange(0.0, 6.0, 0.4)]
    assert int(np.argmax(profile)) == 0
    ring = 5 + int(np.argmax(profile[5:]))
    assert 3.6 < 0.4 * ring + 0.2 < 4.9
    assert profile[ring] > 1.5 * min(profile[:ring])


def test_a_rotation_by_the_true_difference_aligns_two_precipitates_of_one_phase(clean):
    tp = clean["true_patterns"].values.astype(np.float64)
    cls, rot = clean["true_class"].values, clean["true_rotation"].values
    cy, cx = clean.attrs["beam_centre_px"]
    yy, xx = np.indices(tp.shape[1:])
    inside = np.hypot(yy - cy, xx - cx) < min(tp.shape[1:]) / 2 - 3

    def turned(image: np.ndarray, degrees: float) -> np.ndarray:
        # (y, x) turned counter-clockwise from +k_x toward +k_y: sample the input at R(-phi)
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        matrix = np.array([[c, -s], [s, c]])
        centre = np.array([cy, cx])
        return ndimage.affine_transform(image, matrix, offset=centre - matrix @ centre, order=1)

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a[inside], b[inside]
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    pairs = 0
    for phase in (0, 1):
        i, j = np.flatnonzero(cls == phase)[:2]
        diff = rot[j] - rot[i]
        aligned = cosine(turned(tp[i], diff), tp[j])
        assert aligned > 0.95, (phase, aligned)
        assert cosine(turned(tp[i], diff + 12.0), tp[j]) < aligned - 0.2
        pairs += 1
    assert pairs == 2


def test_seeded_deterministic_and_independent_of_chunks(noisy):
    again = kinematic_scan(seed=3, chunks=(5, 8), **SMALL)
    np.testing.assert_array_equal(again["intensity"].values, noisy["intensity"].values)
    np.testing.assert_array_equal(again["true_maps"].values, noisy["true_maps"].values)
    other = kinematic_scan(seed=4, **SMALL)
    assert not np.array_equal(other["true_maps"].values, noisy["true_maps"].values)
    assert not np.array_equal(other["intensity"].values, noisy["intensity"].values)


def test_building_blocks():
    # diffsims' reflections lie in the zone: h.u = 0, and forbidden ones are gone
    for phase in PHASES:
        uvw = phase.zone_axes[0]
        g, intensity, hkl = zone_axis_spots(phase, k_limit_inv_nm=7.0)
        assert np.all(hkl @ np.array(uvw) == 0)
        assert intensity.max() == pytest.approx(1.0) and intensity.min() > 0
        assert np.hypot(*g.T).max() <= 7.0 + 1e-9
    g, _, hkl = zone_axis_spots(PHASES[0], (0, 0, 1), k_limit_inv_nm=5.0)  # B2 CuZr a=3.26 A
    assert sorted(np.round(np.hypot(*g.T), 2))[:4] == [3.07] * 4
    mixed = kinematic_scan(scan=(4, 4), detector=(32, 32), precipitates=9, phases=3, seed=2,
                           random_zone_axes=True)  # fmt: skip
    zones = mixed["true_zone_axis"].values
    assert np.isnan(zones[:2]).all()
    for cls, zone in zip(mixed["true_class"].values[2:], zones[2:], strict=True):
        assert tuple(int(v) for v in zone) in PHASES[cls].zone_axes
    assert len({tuple(z) for z in zones[2:]}) > 3
    psf = detector_psf((16, 16), 1.0, 0.02, 4.0)
    assert psf.shape == (31, 31) and psf.sum() == pytest.approx(1.0)
    assert psf[15, 15] == psf.max() and psf[0, 15] > 0
    k = np.linspace(0.1, 8.0, 80)
    halo = amorphous_intensity(k, seed=0, n_atoms=600)
    assert 3.6 < k[np.argmax(halo)] < 4.9


def test_command_line_writes_a_store(tmp_path):
    out = tmp_path / "scan.zarr"
    main(["--out", str(out), "--scan", "6x5", "--detector", "32x32", "--precipitates", "2",
          "--phases", "2", "--chunks", "4x4"])  # fmt: skip
    ds = open_4dstem(out)
    assert ds["intensity"].shape == (6, 5, 32, 32)
    assert "true_patterns" in ds and ds.attrs["source"].startswith("benchmarks.kinematic")
    direct = kinematic_scan(scan=(6, 5), detector=(32, 32), precipitates=2, phases=2)
    np.testing.assert_array_equal(ds["intensity"].values, direct["intensity"].values)


def test_true_patterns_have_no_artificial_dips(clean):
    from dask_stemnmf.evaluate import hole_depth_of_truth

    got = hole_depth_of_truth(clean)
    assert got["n_discs"].values[1] > 10
    assert got.attrs["worst_hole_depth"] < 0.1
