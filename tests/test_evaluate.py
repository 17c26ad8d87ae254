from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dask_stemnmf import InputError, match_to_truth

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


def test_mismatched_inputs_are_refused():
    rng = np.random.default_rng(2)
    truth = fake(rng.random((2, 4, 4)), rng.random((2, 5, 5)), prefix="true_")
    with pytest.raises(InputError, match="pixels"):
        match_to_truth(fake(rng.random((2, 4, 4)), rng.random((2, 6, 6))), truth)
    with pytest.raises(InputError, match="lacks"):
        match_to_truth(truth, truth)
