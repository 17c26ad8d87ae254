"""The continuity kernels on hand-made patterns: which holes are filled, and how far."""

from __future__ import annotations

import numpy as np

from dask_stemnmf._kernels.constraints import disc_footprint, fill_at


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.indices(shape)
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def test_fill_at_raises_holes_to_their_surroundings_and_never_lowers():
    rng = np.random.default_rng(0)
    shape = (40, 40)
    pattern = 10.0 + 0.1 * rng.standard_normal(shape)
    hole = _disc(shape, (20, 20), 2.5)
    pattern[hole] -= 4.0
    bump = _disc(shape, (8, 8), 2.5)
    pattern[bump] += 4.0  # a peak at a pixel to fill is not lowered
    valid = np.ones(shape, bool)
    filled, n = fill_at(pattern, hole | bump, valid, 3.0, depth=1.0)
    assert n == hole.sum()
    np.testing.assert_allclose(filled[hole], 10.0, atol=0.1)
    np.testing.assert_array_equal(filled[~hole], pattern[~hole])
    half, _ = fill_at(pattern, hole | bump, valid, 3.0, depth=1.0, fraction=0.5)
    np.testing.assert_allclose(half[hole], pattern[hole] + 0.5 * (filled[hole] - pattern[hole]))


def test_fill_at_by_region_finds_a_hole_that_no_single_pixel_shows():
    """A disc-wide hole 1.5 noise deep: no pixel is 5 noise below its surroundings, but
    the disc's mean is more than 5 / sqrt(21) below (the noise of a mean of its 21
    pixels); a region of pure noise is left alone."""
    rng = np.random.default_rng(1)
    shape = (48, 48)
    sigma = 1.0
    pattern = 100.0 + sigma * rng.standard_normal(shape)
    hole = _disc(shape, (16, 16), 2.5)
    assert hole.sum() == disc_footprint(2.5).sum() == 21
    pattern[hole] -= 1.5 * sigma
    calm = _disc(shape, (32, 32), 2.5)
    valid = np.ones(shape, bool)
    floor = np.full(shape, 5.0 * sigma)
    _, n_pixel = fill_at(pattern, hole | calm, valid, 3.0, depth=floor)
    assert n_pixel == 0
    by_region, n_region = fill_at(pattern, hole | calm, valid, 3.0, depth=floor, by_region=True)
    assert n_region > 0.6 * hole.sum()
    assert not (by_region != pattern)[calm].any()
    assert abs(by_region[hole].mean() - 100.0) < 0.5 * sigma
    assert (by_region >= pattern).all()
