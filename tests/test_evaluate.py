from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dask_stemnmf import InputError, match_to_truth, pattern_mixture, simulate_scan
from dask_stemnmf.evaluate import hole_depth, hole_depth_of_truth

from . import naive


def fake(maps, patterns, prefix=""):
    dims = ("source",) if prefix else ("component",)
    return xr.Dataset(
        {
            f"{prefix}maps": ((*dims, "scan_y", "scan_x"), maps),
            ("true_patterns" if prefix else "diffractions"): ((*dims, "k_y", "k_x"), patterns),
        }
    )


@pytest.mark.parametrize(("n_src", "k"), [(4, 4), (3, 6), (5, 7)])
def test_matching_is_the_best_assignment_and_scores_each_pair(n_src, k):
    rng = np.random.default_rng(n_src * 10 + k)
    truth = fake(rng.random((n_src, 5, 6)), rng.random((n_src, 4, 4)), prefix="true_")
    result = fake(rng.random((k, 5, 6)), rng.random((k, 4, 4)))
    got = match_to_truth(result, truth)
    tp = truth["true_patterns"].values.reshape(n_src, -1)
    fp = result["diffractions"].values.reshape(k, -1)
    cos = np.array([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in fp] for a in tp])
    best = naive.best_assignment(cos)
    assert {i: int(c) for i, c in enumerate(got["component"].values)} == best
    for i, j in best.items():
        assert got["diffraction_cosine"].values[i] == pytest.approx(cos[i, j])
        tm, fm = truth["true_maps"].values[i].ravel(), result["maps"].values[j].ravel()
        want = tm @ fm / np.linalg.norm(tm) / np.linalg.norm(fm)
        assert got["map_cosine"].values[i] == pytest.approx(want)


def test_a_permuted_and_scaled_truth_scores_one_and_pixels_restrict_the_comparison():
    rng = np.random.default_rng(1)
    maps, patterns = rng.random((3, 4, 4)), rng.random((3, 5, 5))
    truth = fake(maps, patterns, prefix="true_")
    order = [2, 0, 1]
    result = fake(maps[order] * 7.0, -patterns[order])  # sign and scale do not matter
    got = match_to_truth(result, truth)
    np.testing.assert_array_equal(got["component"].values, [1, 2, 0])
    np.testing.assert_allclose(got["diffraction_cosine"].values, 1.0)
    np.testing.assert_allclose(got["map_cosine"].values, 1.0)
    # differing only on pixels left out: still a perfect match
    spoiled = result.copy(deep=True)
    spoiled["diffractions"].values[:, 0, 0] = 100.0
    pixels = np.ones((5, 5), dtype=bool)
    pixels[0, 0] = False
    assert match_to_truth(spoiled, truth)["diffraction_cosine"].min() < 0.9
    np.testing.assert_allclose(match_to_truth(spoiled, truth, pixels)["diffraction_cosine"], 1.0)
    # fewer components than sources: the unmatched source is marked
    few = match_to_truth(fake(maps[:2], patterns[:2]), truth)
    assert list(few["component"].values) == [0, 1, -1]
    assert np.isnan(few["map_cosine"].values[2])


def test_alike_sources_are_matched_as_one_source_with_their_maps_summed():
    # sources 1 and 3: one phase in one orientation in two places (patterns 0.99 alike); a
    # fit holds them in one component whose map covers both regions, and a spare component
    rng = np.random.default_rng(4)
    patterns = rng.random((4, 5, 5)) ** 8
    patterns[3] = patterns[1] * (1 + 0.05 * rng.random((5, 5)))
    maps = np.zeros((4, 6, 6))
    maps[0] = 1.0
    maps[1, :2, :2] = 2.0
    maps[2, 3:, :2] = 1.5
    maps[3, 3:, 4:] = 0.5
    truth = fake(maps, patterns, prefix="true_")
    counts = lambda s: patterns[s].sum()  # noqa: E731
    joined = maps[1] * counts(1) + maps[3] * counts(3)
    mixed = maps[1].sum() * patterns[1] + maps[3].sum() * patterns[3]  # counts-weighted
    result = fake(
        np.stack([rng.random((6, 6)), maps[2], joined, maps[0]]),
        np.stack([rng.random((5, 5)), patterns[2], mixed, patterns[0]]),
    )
    apart = match_to_truth(result, truth)
    np.testing.assert_array_equal(apart["group"].values, [0, 1, 2, 3])
    assert apart["map_cosine"].values[[1, 3]].min() < 0.9  # each holds half the map
    got = match_to_truth(result, truth, alike=0.95)
    np.testing.assert_array_equal(got["group"].values, [0, 1, 2, 1])
    np.testing.assert_array_equal(got["component"].values, [3, 2, 1, 2])
    np.testing.assert_allclose(got["map_cosine"].values, 1.0)
    np.testing.assert_allclose(got["diffraction_cosine"].values, 1.0, atol=1e-12)
    # the group's own share counts both members' patterns
    shares = pattern_mixture(result, truth, match=got)
    assert shares["own_share"].values[1] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="alike"):
        match_to_truth(result, truth, alike=1.5)


def test_alike_groups_join_transitively_and_only_above_the_threshold():
    from dask_stemnmf.evaluate import alike_groups

    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.9, 0.44, 0.0])  # cos(a, b) ~ 0.90
    c = np.array([0.6, 0.8, 0.0])  # cos(b, c) ~ 0.89, cos(a, c) = 0.6
    d = np.array([0.0, 0.0, 1.0])
    patterns = np.stack([d, c, a, b])
    cos = lambda u, v: u @ v / np.linalg.norm(u) / np.linalg.norm(v)  # noqa: E731
    assert cos(a, b) > 0.895 and 0.88 < cos(b, c) < 0.895
    np.testing.assert_array_equal(alike_groups(patterns, 0.895), [0, 1, 2, 2])
    np.testing.assert_array_equal(alike_groups(patterns, 0.88), [0, 1, 1, 1])
    np.testing.assert_array_equal(alike_groups(patterns, 1.0), [0, 1, 2, 3])


def test_mismatched_inputs_are_refused():
    rng = np.random.default_rng(2)
    truth = fake(rng.random((2, 4, 4)), rng.random((2, 5, 5)), prefix="true_")
    with pytest.raises(InputError, match="pixels"):
        match_to_truth(fake(rng.random((2, 4, 4)), rng.random((2, 6, 6))), truth)
    with pytest.raises(InputError, match="lacks"):
        match_to_truth(truth, truth)


# --- hole depth: the artificial dips of Kimoto et al.'s Fig. 1c ---


def disc(shape, cy, cx, radius):
    yy, xx = np.indices(shape)
    return (np.hypot(yy - cy, xx - cx) <= radius).astype(np.float64)


def synthetic_truth():
    """Beam at the centre, a flat matrix, two precipitates with two discs each at |g| = 12 px."""
    shape = (48, 48)
    beam = disc(shape, 24, 24, 3)
    matrix = np.ones(shape)
    first = disc(shape, 12, 24, 3) + disc(shape, 36, 24, 3)
    second = disc(shape, 24, 12, 3) + disc(shape, 24, 36, 3)
    patterns = np.stack([beam, matrix, first, second])
    patterns /= patterns.sum(axis=(1, 2), keepdims=True)
    truth = xr.Dataset(
        {
            "true_patterns": (("source", "k_y", "k_x"), patterns),
            "true_class": (("source",), np.array([-1, -1, 0, 1])),
        },
        coords={"source": np.arange(4)},
        attrs={"beam_centre_px": [24.0, 24.0]},
    )
    return truth, patterns


def as_result(diffractions, fit_mask=None):
    ds = xr.Dataset({"diffractions": (("component", "k_y", "k_x"), diffractions)})
    if fit_mask is not None:
        ds["fit_mask"] = (("k_y", "k_x"), fit_mask)
    return ds


def test_hole_depth_is_the_dip_below_the_arc_over_the_mean():
    truth, patterns = synthetic_truth()
    shape = patterns.shape[1:]
    # a flat component with holes at the other precipitate's discs (punched a bit wider)
    holes_at_second = (disc(shape, 24, 12, 4) + disc(shape, 24, 36, 4)) > 0
    holes_at_first = (disc(shape, 12, 24, 4) + disc(shape, 36, 24, 4)) > 0
    a = np.where(holes_at_second, 0.0, 1.0)
    b = np.where(holes_at_first, 0.0, 1.0)
    result = as_result(np.stack([patterns[0], patterns[1], a, b]))
    got = hole_depth(result, truth, match=np.arange(4))
    assert list(got["matched_source"].values) == [0, 1, 2, 3]
    # one per disc below an arc at 1: the depth over the component's mean
    assert got["hole_depth"].values[2] == pytest.approx(1.0 / a.mean())
    assert got["hole_depth"].values[3] == pytest.approx(1.0 / b.mean())
    assert list(got["n_discs"].values) == [4, 4, 2, 2]
    # the beam and the flat matrix have no dips
    np.testing.assert_allclose(got["hole_depth"].values[:2], 0.0, atol=1e-12)
    assert got.attrs["worst_hole_depth"] == pytest.approx(max(1 / a.mean(), 1 / b.mean()))
    assert got.attrs["worst_component"] in (2, 3)
    assert got.attrs["disc_radius_px"] == pytest.approx(3.0, abs=0.2)  # from the beam's area
    # the component's own discs are no holes: matched the other way round, nothing is found
    swapped = hole_depth(result, truth, match=np.array([0, 1, 3, 2]))
    np.testing.assert_allclose(swapped["hole_depth"].values[2:], 0.0, atol=1e-12)
    # holes outside the fitted pixels are not seen
    masked = hole_depth(as_result(result["diffractions"].values, ~holes_at_second), truth,
                        match=np.arange(4))  # fmt: skip
    assert masked["n_discs"].values[2] == 0 and np.isnan(masked["hole_depth"].values[2])
    # a scale does not change the measure
    scaled = hole_depth(as_result(result["diffractions"].values * 7.0), truth, match=np.arange(4))
    np.testing.assert_allclose(scaled["hole_depth"].values, got["hole_depth"].values)


def test_unmatched_empty_and_amorphous_components_are_handled():
    truth, patterns = synthetic_truth()
    shape = patterns.shape[1:]
    holes = (disc(shape, 24, 12, 4) + disc(shape, 24, 36, 4) + disc(shape, 12, 24, 4)) > 0
    halo = np.where(holes, 0.0, patterns[1])  # an amorphous component with dips
    extra = np.stack([*patterns, halo, np.zeros(shape)])
    got = hole_depth(as_result(extra), truth)  # matched by the diffractions alone
    assert list(got["matched_source"].values) == [0, 1, 2, 3, -1, -1]
    # unmatched: every precipitate's disc counts; three of its four are holes
    assert got["n_discs"].values[4] == 4
    assert got["hole_depth"].values[4] == pytest.approx(0.75 / (halo.mean() / patterns[1, 0, 0]))
    assert np.isnan(got["hole_depth"].values[5])  # empty: no mean to compare with
    assert got.attrs["worst_component"] == 4
    # fewer components than sources: the unmatched sources just have no component
    few = hole_depth(as_result(patterns[:2]), truth)
    assert list(few["matched_source"].values) == [0, 1]
    np.testing.assert_allclose(few["hole_depth"].values, 0.0, atol=1e-12)


def test_a_component_owns_the_precipitates_it_holds_not_only_its_match():
    truth, patterns = synthetic_truth()
    shape = patterns.shape[1:]
    holes_at_second = (disc(shape, 24, 12, 4) + disc(shape, 24, 36, 4)) > 0
    # the matrix with holes at the second precipitate's discs, holding half the first's
    # pattern too: matched to the matrix, it owns the first (peaks there, no holes)
    matrix = np.where(holes_at_second, 0.0, patterns[1])
    mixed = matrix / matrix.sum() + patterns[2] / patterns[2].sum()
    result = as_result(np.stack([patterns[0], mixed, patterns[2], patterns[3]]))
    got = hole_depth(result, truth, match=np.arange(4))
    np.testing.assert_array_equal(
        got["owned_sources"].values[1], [False, True, True, False]
    )  # matched to the matrix, holding the first precipitate
    np.testing.assert_array_equal(got["owned_sources"].values[2:, 2:], np.eye(2, dtype=bool))
    # only the second's two discs are judged: both holes, at the matrix's level beside them
    assert got["n_discs"].values[1] == 2
    level = matrix.max() / matrix.sum()
    assert got["hole_depth"].values[1] == pytest.approx(level / mixed.mean())
    # a component holding nothing above the share owns only its match
    assert not got["owned_sources"].values[0, 2:].any()


@pytest.fixture(scope="module")
def simulated():
    return simulate_scan(scan=(24, 24), detector=(48, 48), precipitates=4, phases=2, seed=1)


def test_true_patterns_have_no_holes_and_punched_ones_do(simulated):
    truth = hole_depth_of_truth(simulated)
    assert truth.sizes["component"] == simulated.sizes["source"]
    assert list(truth["matched_source"].values) == list(range(simulated.sizes["source"]))
    assert truth["n_discs"].values[1] > 10  # the matrix sees every precipitate's discs
    assert truth.attrs["worst_hole_depth"] < 0.1
    assert np.nanmax(truth["hole_depth"].values) < 0.1

    tp = simulated["true_patterns"].values.astype(np.float64)
    # holes in the matrix (halo) where the precipitates have their discs
    owned = np.zeros(tp.shape[1:], dtype=bool)
    for s in range(2, tp.shape[0]):
        owned |= tp[s] > 0.05 * tp[s].max()
    punched = tp.copy()
    punched[1][owned] = 0.0
    result = xr.Dataset(
        {
            "maps": (("component", "scan_y", "scan_x"), simulated["true_maps"].values),
            "diffractions": (("component", "k_y", "k_x"), punched),
        }
    )
    got = hole_depth(result, simulated)  # matched with match_to_truth
    assert list(got["matched_source"].values) == list(range(tp.shape[0]))
    assert got["hole_depth"].values[1] > 0.3
    assert got.attrs["worst_component"] == 1
    assert np.nanmax(np.delete(got["hole_depth"].values, 1)) < 0.1
    # the same match passed in gives the same answer
    again = hole_depth(result, simulated, match=match_to_truth(result, simulated))
    xr.testing.assert_identical(again, got)


def test_the_truth_with_a_fits_noise_scores_the_noise_floor_of_the_measure(simulated):
    tp = simulated["true_patterns"].values.astype(np.float64)
    k = tp.shape[0]
    result = xr.Dataset(
        {
            "maps": (("component", "scan_y", "scan_x"), simulated["true_maps"].values),
            "diffractions": (("component", "k_y", "k_x"), tp),
            "diffraction_sigma": (("component", "k_y", "k_x"), np.zeros_like(tp)),
            "fit_mask": (("k_y", "k_x"), np.ones(tp.shape[1:], dtype=bool)),
        }
    )
    clean = hole_depth_of_truth(simulated)
    # no noise: the noise-free truth's own scores
    silent = hole_depth_of_truth(simulated, noise_like=result)
    np.testing.assert_allclose(silent["hole_depth"].values, clean["hole_depth"].values)
    # the measure counts each disc's depth at zero or above: noise alone scores, more
    # noise scores more, while the noise's mean is zero (no hole was made)
    floors = []
    for rel in (0.05, 0.3):
        noisy = result.copy(deep=True)
        noisy["diffraction_sigma"].values[:] = rel * tp.max(axis=(1, 2), keepdims=True)
        got = hole_depth_of_truth(simulated, noise_like=noisy, seed=3)
        floors.append(float(np.nanmean(got["hole_depth"].values)))
    assert np.nanmean(clean["hole_depth"].values) < floors[0] < floors[1]
    with pytest.raises(InputError, match="diffraction_sigma"):
        hole_depth_of_truth(simulated, noise_like=result.drop_vars("diffraction_sigma"))
    assert k == clean.sizes["component"]


def test_hole_depth_refuses_what_it_cannot_measure(simulated):
    with pytest.raises(InputError, match="fitted to"):
        hole_depth(as_result(np.ones((2, 8, 8))), simulated)
    with pytest.raises(InputError, match="match"):
        hole_depth(as_result(np.ones((2, 48, 48))), simulated, match=np.array([0, 1]))
    with pytest.raises(InputError, match="diffractions"):
        hole_depth(simulated, simulated)


def test_pattern_mixture_recovers_the_shares_a_mixed_component_holds():
    # sparse "precipitate" patterns and a broad "halo": component 1 is 0.6 of source 1 and
    # 0.4 of the halo (a mixture that fits the data as well), component 2 is pure
    rng = np.random.default_rng(3)
    halo = 1.0 + rng.random((6, 6))
    spots = [np.zeros((6, 6)) for _ in range(2)]
    spots[0][1, 1] = spots[0][4, 3] = 1.0
    spots[1][2, 5] = spots[1][5, 0] = 1.0
    patterns = np.stack([halo, *spots])
    patterns /= patterns.sum(axis=(1, 2), keepdims=True)
    truth = fake(rng.random((3, 4, 4)), patterns, prefix="true_")
    truth = truth.assign_coords(source=np.arange(3))
    found = np.stack([patterns[0], 0.6 * patterns[1] + 0.4 * patterns[0], 5.0 * patterns[2]])
    result = fake(truth["true_maps"].values, found)
    got = pattern_mixture(result, truth)
    np.testing.assert_allclose(got["own_share"].values, [1.0, 0.6, 1.0], atol=1e-9)
    np.testing.assert_allclose(got["mixture"].values[1], [0.4, 0.6, 0.0], atol=1e-9)
    np.testing.assert_allclose(got["residual"].values, 0.0, atol=1e-9)
    # pixels left out of the fit are left out of the shares
    mask = np.ones((6, 6), dtype=bool)
    mask[0, :] = False
    masked = result.assign(fit_mask=(("k_y", "k_x"), mask))
    assert pattern_mixture(masked, truth)["own_share"].values[1] == pytest.approx(
        (0.6 * patterns[1][mask].sum())
        / (0.6 * patterns[1][mask].sum() + 0.4 * patterns[0][mask].sum()),
        abs=1e-9,
    )
