from __future__ import annotations

import dask
import numpy as np
import pytest
from scipy import ndimage

from dask_stemnmf import InputError, rotational_similarity, simulate_scan
from dask_stemnmf._kernels.polar import normalise_polar, polar_grid, polar_transform
from dask_stemnmf.similarity import polar_spectra

from . import naive


def brute_force(polar):
    """Every shift tried: rho_ij = max_tau sum p_i(r, theta) p_j(r, theta + tau)."""
    p = normalise_polar(polar)
    n, _, t = p.shape
    rho = np.empty((n, n))
    shift = np.empty((n, n), dtype=int)
    for i in range(n):
        for j in range(n):
            scores = [np.sum(p[i] * np.roll(p[j], -tau, axis=1)) for tau in range(t)]
            shift[i, j] = int(np.argmax(scores))
            rho[i, j] = scores[shift[i, j]]
    return rho, shift


def test_polar_transform_samples_bilinearly():
    rng = np.random.default_rng(0)
    image = rng.random((1, 21, 23))
    radii, angles = polar_grid(5, 16, 1.0, 8.0)
    got = polar_transform(image, np.array([10.3, 11.6]), radii, angles)[0]
    for a, r in enumerate(radii):
        for t, th in enumerate(angles):
            want = ndimage.map_coordinates(
                image[0], [[10.3 + r * np.sin(th)], [11.6 + r * np.cos(th)]], order=1
            )[0]
            assert got[a, t] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("block", [2, 3, 256])
def test_similarity_equals_the_brute_force_shift_search(block):
    rng = np.random.default_rng(1)
    patterns = rng.random((7, 24, 24)) ** 4
    _, grid = polar_spectra(patterns, centre=(11.5, 11.7), n_angles=48, scaling="none")
    polar = polar_transform(patterns, np.array([11.5, 11.7]), grid["radii_px"], grid["angles_rad"])
    want_rho, want_shift = brute_force(polar)
    rho, angle = rotational_similarity(
        patterns, centre=(11.5, 11.7), n_angles=48, scaling="none", block=block
    )
    np.testing.assert_allclose(rho, want_rho, atol=1e-6)
    np.testing.assert_allclose(rho, rho.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(rho), 1.0, atol=1e-9)
    np.testing.assert_array_equal(np.round(angle / 7.5).astype(int) % 48, want_shift)
    pair, _ = rotational_similarity(
        patterns[:2], centre=(11.5, 11.7), n_angles=48, scaling="none", block=block
    )
    np.testing.assert_allclose(pair, want_rho[:2, :2], atol=1e-6)  # P = 2


@pytest.fixture(scope="module")
def phases():
    ds = simulate_scan(
        scan=(8, 8), detector=(96, 96), precipitates=4, phases=3, seed=3, noise=False
    )
    return ds["true_patterns"].values.astype(float), ds.attrs["beam_centre_px"], ds


@pytest.mark.parametrize("degrees", [0.0, 17.0, 90.0, 133.3, 241.0, 359.0])
def test_a_rotated_pattern_matches_itself_and_its_angle_is_recovered(phases, degrees):
    patterns, centre, _ = phases
    crystal = patterns[2]
    rotated = naive.rotate(crystal, centre[0], centre[1], degrees)
    rho, angle = rotational_similarity(
        np.stack([crystal, rotated]), centre=tuple(centre), central_mask_px=6, n_angles=360
    )
    assert rho[0, 1] > 0.99
    error = (angle[0, 1] - degrees + 180) % 360 - 180
    assert abs(error) <= 1.0, (angle[0, 1], degrees)
    assert (angle[1, 0] + angle[0, 1]) % 360 == pytest.approx(0, abs=1e-9) or (
        angle[1, 0] + angle[0, 1]
    ) % 360 == pytest.approx(360)


def test_different_phases_score_clearly_lower(phases):
    patterns, centre, ds = phases
    phase = ds["true_class"].values
    crystals = [i for i in range(patterns.shape[0]) if phase[i] >= 0]
    rho, _ = rotational_similarity(patterns[crystals], centre=tuple(centre), central_mask_px=6)
    same = [rho[a, b] for a in range(len(crystals)) for b in range(a + 1, len(crystals))
            if phase[crystals[a]] == phase[crystals[b]]]  # fmt: skip
    other = [rho[a, b] for a in range(len(crystals)) for b in range(a + 1, len(crystals))
             if phase[crystals[a]] != phase[crystals[b]]]  # fmt: skip
    assert other, "the fixture needs precipitates of different phases"
    assert max(other) < 0.8
    if same:
        assert min(same) > max(other) + 0.1


def test_lazy_tiles_build_without_computing_and_bad_input_is_refused(raise_if_dask_computes):
    rng = np.random.default_rng(2)
    patterns = rng.random((5, 16, 16))
    with dask.config.set(scheduler=raise_if_dask_computes):
        rho, _ = rotational_similarity(patterns, centre=(8, 8), lazy=True, block=2)
    assert rho.shape == (5, 5) and rho.numblocks == (3, 3)
    np.testing.assert_allclose(rho.compute(), rotational_similarity(patterns, centre=(8, 8))[0])
    with pytest.raises(InputError, match="stack"):
        rotational_similarity(patterns[0])
    with pytest.raises(InputError, match="NaN"):
        rotational_similarity(np.full((2, 4, 4), np.nan))
    with pytest.raises(InputError, match="r_range"):
        rotational_similarity(patterns, centre=(8, 8), r_range=(5, 2))


def test_a_lazy_stack_of_many_patterns_with_uneven_tiles(raise_if_dask_computes):
    """Thousands of patterns from a scan, tiled: equal to the all-in-one computation, built
    without reading the data when the centre is given; one centre per pattern works too."""
    ds = simulate_scan(scan=(10, 13), detector=(32, 32), precipitates=3, seed=5, chunks=(5, 13))
    stack = ds["intensity"].data.reshape(130, 32, 32).astype(np.float64)
    centre = tuple(ds.attrs["beam_centre_px"])
    kw = {"centre": centre, "n_angles": 90, "central_mask_px": 3}
    with dask.config.set(scheduler=raise_if_dask_computes):
        rho, angle = rotational_similarity(stack, lazy=True, block=48, **kw)
    assert rho.numblocks == (3, 3)
    whole = rotational_similarity(stack.compute(), block=130, **kw)
    np.testing.assert_allclose(rho.compute(), whole[0], atol=1e-12)
    np.testing.assert_allclose(angle.compute(), whole[1], atol=1e-12)
    each, _ = rotational_similarity(stack, centre="each", n_angles=90, central_mask_px=3, block=64)
    assert each.shape == (130, 130) and np.allclose(np.diag(each), 1.0)
    assert np.abs(each - whole[0]).max() < 0.2  # per-pattern centres move by noise only


def test_the_radius_range_adapts_to_small_detectors_and_large_discs():
    """Never an empty range: a bright-field disc wider than the room to the nearest edge is
    dropped from the mask (with a note); a detector too small to judge rotation is refused
    with the reason, not an empty range."""
    from dask_stemnmf import StemNMFWarning
    from dask_stemnmf.similarity import MIN_RADIUS_PX, default_r_range, polar_patterns

    assert default_r_range((32, 32), (15.5, 15.5), 4.0) == (4.0, 15.5)
    # a disc of 37 px about a beam 26 px from the detector's edge (the Merlin file's case)
    with pytest.warns(StemNMFWarning, match="bright-field disc included"):
        r_min, r_max = default_r_range((256, 256), (109.7, 26.3), 37.2)
    assert (r_min, r_max) == (0.0, pytest.approx(26.3))
    rng = np.random.default_rng(3)
    small = rng.random((3, 26, 31))  # TopSpin's 26 x 31 patterns
    with pytest.warns(StemNMFWarning):
        polar, grid = polar_patterns(small, centre=(12.9, 13.9), central_mask_px=12.0)
    assert polar.shape[1] >= 2 and grid["radii_px"][0] == 0.0
    rho, _ = rotational_similarity(small, centre=(12.9, 13.9), central_mask_px=3.0)
    assert np.allclose(np.diag(rho), 1.0)
    tiny = rng.random((2, 4, 5))  # py4DSTEM's 4 x 5 patterns
    with pytest.raises(InputError, match="too small to judge rotation"):
        rotational_similarity(tiny)
    with pytest.raises(InputError, match="too small to judge rotation"):
        polar_patterns(rng.random((2, 40, 40)), centre=(1.0, 20.0))  # a centre at the edge
    # an explicit range is the caller's: used as given
    polar, grid = polar_patterns(tiny, centre=(1.5, 2.0), r_range=(0.0, 1.5), n_radii=3)
    assert polar.shape == (2, 3, 360) and MIN_RADIUS_PX == 2.0
