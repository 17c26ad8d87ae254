"""Bragg spots and the continuity fill at other components' spots, on hand-made patterns."""

from __future__ import annotations

import numpy as np

from dask_stemnmf._kernels.spots import arc_pixels, bragg_spots, ring_level
from dask_stemnmf.nmf.continuity import fill_all

SHAPE = (64, 64)
CENTRE = (31.5, 31.5)
DISC = 2.5  # a Bragg disc's radius, px (the fill's continuity radius is half of it)


def _ring(radius: float, width: float) -> np.ndarray:
    yy, xx = np.indices(SHAPE)
    rho = np.hypot(yy - CENTRE[0], xx - CENTRE[1])
    return np.exp(-0.5 * ((rho - radius) / width) ** 2) + 0.05


def _discs(angles_deg: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian discs on a ring; returns the pattern and their ``(n, 2)`` centres."""
    yy, xx = np.indices(SHAPE)
    out = np.zeros(SHAPE)
    at = []
    for a in np.deg2rad(angles_deg):
        cy, cx = CENTRE[0] + radius * np.sin(a), CENTRE[1] + radius * np.cos(a)
        out += np.exp(-0.5 * (np.hypot(yy - cy, xx - cx) / (0.6 * DISC)) ** 2)
        at.append((cy, cx))
    return out, np.asarray(at)


def _counts(pattern: np.ndarray, total: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts of ``pattern`` scaled to ``total``; returns counts and their sigma."""
    mean = pattern / pattern.sum() * total
    counts = np.random.default_rng(seed).poisson(mean).astype(np.float64)
    return counts, np.sqrt(np.maximum(mean, 1.0))


def test_bragg_spots_finds_the_discs_and_not_the_halo_or_its_speckle():
    discs, at = _discs(np.arange(0, 360, 60), 18.0)
    valid = np.ones(SHAPE, bool)
    counts, sigma = _counts(0.5 * _ring(12.0, 3.0) + discs, 2e5, 0)
    spots, bright = bragg_spots(counts, valid, 4 * sigma, DISC, 0.02 * counts.max())
    centres = np.array([(np.nonzero(s)[0].mean(), np.nonzero(s)[1].mean()) for s in spots])
    assert len(spots) == 6
    gap = np.hypot(*(centres[:, None, :] - at[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    assert gap.max() < 1.0
    assert all(bright[int(round(y)), int(round(x))] for y, x in centres)
    # a halo alone, at a low dose: speckle everywhere, no spot
    halo, sigma = _counts(_ring(12.0, 3.0), 2e4, 1)
    spots, _ = bragg_spots(halo, valid, 4 * sigma, DISC, 0.02 * halo.max())
    assert spots == []


def test_arc_pixels_lie_on_the_rings_through_the_spot_beside_it():
    yy, xx = np.indices(SHAPE)
    spot = np.hypot(yy - CENTRE[0], xx - (CENTRE[1] + 20)) <= DISC
    arc = arc_pixels(spot, np.ones(SHAPE, bool), CENTRE, DISC)
    rho = np.hypot(yy - CENTRE[0], xx - CENTRE[1])[arc]
    assert arc.sum() > 20 and not (arc & spot).any()
    assert rho.min() >= 20 - DISC - 0.5 and rho.max() <= 20 + DISC + 0.5
    along = np.hypot(yy[arc] - CENTRE[0], xx[arc] - (CENTRE[1] + 20))
    assert along.min() >= 1.4 * DISC and along.max() <= 6.1 * DISC


def _two_components(depth: float, total: float, seed: int):
    """A halo holding holes ``depth`` deep at a crystal's discs, and the crystal."""
    crystal, at = _discs(np.arange(15, 360, 60), 12.0)
    halo = _ring(12.0, 3.0) * (1.0 - depth * crystal / crystal.max())
    valid = np.ones(SHAPE, bool)
    valid[np.hypot(*(np.indices(SHAPE) - np.array(CENTRE)[:, None, None])) < 5] = False
    a, sa = _counts(halo * valid, total, seed)
    b, sb = _counts(crystal * valid + 1e-3, total / 4, seed + 1)
    idx = np.flatnonzero(valid.reshape(-1))
    S = np.stack([a.reshape(-1)[idx], b.reshape(-1)[idx]], axis=1)
    sigma = np.stack([sa.reshape(-1)[idx], sb.reshape(-1)[idx]], axis=1)
    return S, sigma, idx, valid, at


def test_ring_level_follows_the_radial_profile():
    yy, xx = np.indices(SHAPE)
    image = np.hypot(yy - CENTRE[0], xx - CENTRE[1])  # rises with the distance
    spot = np.hypot(yy - CENTRE[0], xx - (CENTRE[1] + 20)) <= DISC
    beside = arc_pixels(spot, np.ones(SHAPE, bool), CENTRE, DISC)
    rings = np.rint(image).astype(int)
    level = ring_level(image[beside], rings[beside], rings[spot])
    assert np.isfinite(level).all()
    np.testing.assert_allclose(level, image[spot], atol=0.8)
    # nothing beside: no level, for one image or several
    none = ring_level(np.zeros((3, 0)), np.zeros(0, int), rings[spot])
    assert none.shape == (3, spot.sum()) and np.isnan(none).all()


def _depth_at(image: np.ndarray, at: np.ndarray, valid: np.ndarray) -> float:
    """Mean over the discs of the ring's median beside each minus the disc's mean."""
    yy, xx = np.indices(SHAPE)
    out = []
    for cy, cx in at:
        spot = np.hypot(yy - cy, xx - cx) <= DISC
        arc = arc_pixels(spot, valid, CENTRE, DISC, (2.0, 4.0))
        out.append(np.median(image[arc]) - image[spot].mean())
    return float(np.mean(out))


def test_fill_raises_the_holes_at_another_components_spots_to_the_ring_beside():
    S, sigma, idx, valid, at = _two_components(0.6, 2e6, 2)
    image = np.zeros(valid.size)
    image[idx] = S[:, 0]
    before = _depth_at(image.reshape(SHAPE), at, valid)
    filled, n = fill_all(S, idx, SHAPE, DISC / 2, 0.02, 4 * sigma, 1.0, centre=CENTRE)
    assert n > 0 and (filled >= S).all()
    image[idx] = filled[:, 0]
    after = _depth_at(image.reshape(SHAPE), at, valid)
    assert before > 0.3 * np.median(S[:, 0]) and abs(after) < 0.1 * before
    # the crystal, whose valleys lie between its own discs, is left as it was
    np.testing.assert_array_equal(filled[:, 1], S[:, 1])


def test_a_partial_step_raises_that_share_of_each_foreign_hole():
    S, sigma, idx, _, _ = _two_components(0.6, 2e6, 2)
    full, _ = fill_all(S, idx, SHAPE, DISC / 2, 0.02, 4 * sigma, 1.0, centre=CENTRE,
                       foreign=True)  # fmt: skip
    quarter, _ = fill_all(S, idx, SHAPE, DISC / 2, 0.02, 4 * sigma, 1.0, centre=CENTRE,
                          foreign_step=0.25)  # fmt: skip
    closing, _ = fill_all(S, idx, SHAPE, DISC / 2, 0.02, 4 * sigma, 1.0, centre=CENTRE,
                          foreign=False)  # fmt: skip
    # where only the fill at the other's spots acts (the closing leaves those pixels), a
    # quarter step raises a quarter of what a full one does
    raised = (full[:, 0] > S[:, 0]) & (closing[:, 0] == S[:, 0])
    assert raised.sum() > 10
    want = 0.25 * (full[raised, 0] - S[raised, 0])  # about 1.75 noise sigmas
    got = quarter[raised, 0] - S[raised, 0]
    assert np.isclose(got, want, rtol=1e-9, atol=0).mean() > 0.95
    # the rest: pixels the closing then raised a little further after one step or the
    # other (by well under a noise sigma)
    assert np.abs(got - want).max() < sigma[:, 0].max()
    np.testing.assert_array_equal(quarter[:, 1], S[:, 1])


def test_fill_leaves_a_hole_shallower_than_the_noise_of_its_mean():
    S, sigma, idx, _, _ = _two_components(0.0, 2e5, 3)
    filled, _ = fill_all(S, idx, SHAPE, DISC / 2, 0.02, 4 * sigma, 1.0, centre=CENTRE)
    # no hole at all: nothing at the crystal's discs is raised beyond noise
    assert np.abs(filled[:, 0] - S[:, 0]).max() <= 4 * sigma[:, 0].max()


def test_fill_takes_a_simulated_halo_with_holes_to_the_true_patterns_level():
    """The paper's Fig. 1c artefact, made from a simulated scan's true patterns: the halo
    with holes where the precipitates' discs are, and the precipitates' patterns; the fill
    brings the halo's hole depth (:func:`dask_stemnmf.evaluate.hole_depth`) from that of
    the holes to near that of the true patterns, and barely touches the precipitates."""
    import xarray as xr

    from dask_stemnmf import simulate_scan
    from dask_stemnmf.evaluate import hole_depth
    from dask_stemnmf.nmf.calibration import default_continuity_radius

    truth = simulate_scan(seed=3, scan=(8, 8), detector=(48, 48), precipitates=4, noise=False)
    patterns = np.asarray(truth["true_patterns"].values, dtype=np.float64)
    sig = patterns.shape[1:]
    crystal = np.asarray(truth["true_class"].values) >= 0
    yy, xx = np.indices(sig)
    centre = ((sig[0] - 1) / 2, (sig[1] - 1) / 2)
    valid = np.hypot(yy - centre[0], xx - centre[1]) > 6  # the bright-field disc left out
    discs = patterns[crystal].sum(axis=0)
    holed = patterns.copy()
    holed[1] = patterns[1] * (1 - 0.8 * np.clip(discs / (0.2 * discs.max()), 0, 1))

    def as_result(values: np.ndarray) -> xr.Dataset:
        return xr.Dataset({
            "diffractions": (("component", "k_y", "k_x"), values),
            "fit_mask": (("k_y", "k_x"), valid),
        })  # fmt: skip

    def depth(values: np.ndarray) -> float:
        return float(hole_depth(as_result(values), truth, match=np.arange(len(values)))
                     ["hole_depth"].values[1])  # fmt: skip

    idx = np.flatnonzero(valid.reshape(-1))
    S = holed.reshape(len(holed), -1)[:, idx].T * 1e4
    floor = np.full_like(S, 1e-3)  # nearly noise-free
    radius = default_continuity_radius(truth, ("k_y", "k_x"))
    filled, _ = fill_all(S, idx, sig, radius, 0.02, floor, 1.0, centre=centre)
    out = np.zeros((len(holed), valid.size))
    out[:, idx] = filled.T
    out = out.reshape(holed.shape)
    before, after, true = depth(holed * valid), depth(out), depth(patterns * valid)
    assert before > 0.3 and after < true + 0.05, (before, after, true)
    for s in np.flatnonzero(crystal):  # the precipitates keep their patterns
        a, b = (patterns[s] * valid).ravel(), out[s].ravel()
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.99
