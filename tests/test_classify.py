from __future__ import annotations

import inspect

import numpy as np
import pytest
import xarray as xr

from dask_stemnmf import InputError, classify, decompose, match_to_truth, simulate_scan
from dask_stemnmf.classify import (
    _cluster,
    crystallinity,
    crystallinity_significance,
    cut_height,
    noise_corrected,
    phase_similarity,
    probe_area_px,
)
from dask_stemnmf.similarity import polar_patterns

pytestmark = pytest.mark.filterwarnings("ignore::dask_stemnmf.errors.ConvergenceWarning")


def adjusted_rand(a, b):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    return sklearn_metrics.adjusted_rand_score(a, b)


def truth_as_result(ds):
    """The ground truth shaped like a decomposition: one component per source."""
    return xr.Dataset(
        {
            "maps": (("component", "scan_y", "scan_x"), ds["true_maps"].values),
            "diffractions": (("component", "k_y", "k_x"), ds["true_patterns"].values),
        },
        coords={d: ds[d] for d in ("scan_y", "scan_x", "k_y", "k_x")},
    )


@pytest.fixture(scope="module")
def scan():
    return simulate_scan(
        scan=(48, 48), detector=(64, 64), precipitates=7, phases=3, seed=11,
        precipitate_diameter_nm=(2.5, 5.0), chunks=(24, 48),
    ).persist()  # fmt: skip


def test_crystallinity_separates_spots_from_rings(scan):
    polar, _ = polar_patterns(scan["true_patterns"].values, centre=scan.attrs["beam_centre_px"])
    score = crystallinity(polar)
    assert score[0] < 0.1 and score[1] < 0.1  # direct beam, amorphous halo
    assert (score[2:] > 0.5).all(), score


def test_default_cut_is_in_the_largest_relative_gap():
    assert cut_height(np.array([0.05, 0.08, 0.6, 0.65]), 0.25) == pytest.approx(np.sqrt(0.075))
    # two phases merging high do not fool it into one cut between them
    heights = np.array([0.05, 0.08, 0.11, 0.13, 0.42, 0.72])
    assert 0.13 < cut_height(heights, 0.25) < 0.42
    assert cut_height(np.array([0.05, 0.1]), 0.25) == 0.25  # one phase is not split by noise
    assert cut_height(np.array([0.7]), 0.25) == pytest.approx(np.sqrt(0.125 * 0.7))
    assert cut_height(np.array([]), 0.25) == 0.25
    # two similar phases (0.17) and a dissimilar one (0.8): the largest ratio lies between
    # phases, and the ceiling keeps the similar two apart
    heights = np.array([0.02, 0.04, 0.17, 0.796])
    assert cut_height(heights, 0.08) > 0.17
    assert cut_height(heights, 0.08, 0.14) == 0.14
    assert cut_height(np.array([0.01, 0.02]), 0.08, 0.14) == 0.08
    assert cut_height(heights, 0.15, 0.14) == 0.15  # the floor wins


def test_the_ground_truth_classifies_into_its_phases(scan):
    classes = classify(truth_as_result(scan))
    truth = scan["true_class"].values
    label = classes["class_label"].values
    assert list(classes["kind"].values[:2]) == ["direct beam", "amorphous"]
    assert adjusted_rand(truth[2:], label[2:]) == 1.0
    assert classes.sizes["class"] == len(set(truth[2:]))
    np.testing.assert_allclose(classes["class_pattern"].sum(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(
        classes["class_map"].sum("class").values,
        scan["true_maps"].values[2:].sum(axis=0),
        rtol=1e-6,
    )
    assert classes.sizes["merge"] == (label >= 0).sum() - 1
    assert sorted(classes["dendrogram_order"].values) == list(range((label >= 0).sum()))


def centres_found(scan, classes, fwhm):
    """For each true precipitate, the distance (nm) to the nearest table entry of its class."""
    comp_class = classes["class_label"].values
    out = []
    for src in range(2, scan.sizes["source"]):
        ty, tx = float(scan["true_centre_y"][src]), float(scan["true_centre_x"][src])
        d = np.hypot(classes["centroid_y_nm"].values - ty, classes["centroid_x_nm"].values - tx)
        out.append((src, float(d.min()) if d.size else np.inf))
    assert all(np.isfinite(v) for _, v in out), comp_class
    return out


def test_rotation_and_table_from_the_ground_truth(scan):
    classes = classify(truth_as_result(scan))
    fwhm = scan.attrs["probe_fwhm_nm"]
    for src, dist in centres_found(scan, classes, fwhm):
        assert dist < fwhm, (src, dist)
    area = classes["area_nm2"].values
    assert (area > 0).all()
    # a sphere's map above half its maximum covers about the sphere's cross-section
    rot = classes["rotation_deg"].values
    assert np.isnan(rot[:2]).all() and np.isfinite(rot[2:]).all()
    # rotations within a class agree with the truth, up to the lattice's symmetry
    symmetry = {"hexagonal": 60.0, "square": 90.0}
    true_rot = scan["true_rotation"].values
    label = classes["class_label"].values
    phases = scan.attrs["phases"]
    for j in range(2, label.size):
        ref = next(i for i in range(2, label.size) if label[i] == label[j] and rot[i] == 0.0)
        period = symmetry.get(phases[int(scan["true_class"][j])]["lattice"], 180.0)
        error = (rot[j] - (true_rot[j] - true_rot[ref]) + period / 2) % period - period / 2
        assert abs(error) <= 1.0, (j, rot[j], true_rot[j] - true_rot[ref], period)


@pytest.mark.parametrize("constrained", [True, False])
def test_pipeline_puts_every_precipitate_in_its_phase(scan, constrained):
    """Decomposition, then classify: every precipitate in its true phase (adjusted Rand
    index 1.0) and found within one probe FWHM of its centre."""
    k = scan.sizes["source"]
    kw = {"map_resolution_nm": "probe"} if constrained else {"diffraction_continuity": False}
    result = decompose(scan, k, max_iter=300, tol=1e-5, **kw)
    classes = classify(result)
    match = match_to_truth(result, scan)
    comps = match["component"].values[2:]
    labels = classes["class_label"].values[comps]
    truth = scan["true_class"].values[2:]
    ari = adjusted_rand(truth, labels)
    print(f"constrained={constrained}: ARI {ari:.3f}, labels {labels}, truth {truth}")
    if constrained:
        assert ari == 1.0
        fwhm = scan.attrs["probe_fwhm_nm"]
        for src, dist in centres_found(scan, classes, fwhm):
            assert dist < fwhm, (src, dist)


def test_options_and_bad_requests(scan):
    result = truth_as_result(scan)
    two = classify(result, n_classes=2)
    assert two.sizes["class"] == 2
    one = classify(result, distance_threshold=2.0)
    assert one.sizes["class"] == 1
    for method in ("average", "complete", "single"):
        assert classify(result, linkage=method).sizes["class"] >= 1
    with pytest.raises(InputError, match="not both"):
        classify(result, n_classes=2, distance_threshold=0.3)
    with pytest.raises(InputError, match="linkage"):
        classify(result, linkage="ward")
    with pytest.raises(InputError, match="lacks"):
        classify(result.drop_vars("maps"))


# --- noise: what a fit's components look like -------------------------------------------


def fit_like(ds, rng, halo_share=0.3, noise=True):
    """The ground truth shaped like a fit: one component per precipitate, as a fit sees it.

    Each precipitate's pattern carries some amorphous halo (up to ``halo_share``) and the
    counting noise of a least-squares component: ``var(D^T c / |c|^2) = sum_p c_p^2 D_p /
    |c|^4`` for Poisson data ``D = C^T X`` (every source's counts at the precipitate's
    positions, not only its own), given as ``diffraction_sigma``; the bright-field disc is
    not fitted.
    """
    maps = ds["true_maps"].values.astype(np.float64)
    pats = ds["true_patterns"].values.astype(np.float64)
    c = maps.reshape(maps.shape[0], -1)
    cy, cx = ds.attrs["beam_centre_px"]
    beam = pats[0]
    disc_px = 1.5 * float(np.sqrt((beam > 0.5 * beam.max()).sum() / np.pi))
    yy, xx = np.indices(beam.shape)
    valid = np.hypot(yy - cy, xx - cx) > disc_px
    var = (c**2 @ c.T @ pats.reshape(len(pats), -1)) / (c**2).sum(axis=1)[:, None] ** 2
    sigma = np.where(valid, np.sqrt(var).reshape(pats.shape), 0.0)
    share = rng.uniform(0.0, halo_share, len(pats))[:, None, None]
    x = np.where(valid, (1 - share) * pats + share * pats[1], 0.0)
    x /= x.sum(axis=(1, 2), keepdims=True)
    if noise:
        x = np.maximum(x + sigma * rng.standard_normal(x.shape), 0.0)
        x /= x.sum(axis=(1, 2), keepdims=True)
    return xr.Dataset(
        {
            "maps": (("component", "scan_y", "scan_x"), maps[2:]),
            "diffractions": (("component", "k_y", "k_x"), x[2:]),
            "diffraction_sigma": (("component", "k_y", "k_x"), sigma[2:].astype(np.float32)),
            "fit_mask": (("k_y", "k_x"), valid),
        },
        coords={d: ds[d] for d in ("scan_y", "scan_x", "k_y", "k_x")},
        attrs={
            "masks": {"bright_field_disc": {"centre_px": [cy, cx], "radius_px": disc_px}},
            "probe_fwhm_nm": ds.attrs["probe_fwhm_nm"],
        },
    )


def noise_map(shape, cutoff_cycles_per_px, rng, mean, sd):
    """A map of nothing but noise: white noise band-limited like a fit's maps, clipped at 0."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None]
    passed = np.hypot(fy, fx) <= cutoff_cycles_per_px
    m = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * passed, s=shape)
    return np.maximum(m / m.std() * sd + mean, 0.0)


def noise_only(ds, counts, rng, mean=300.0, sd=100.0):
    """A fit of nothing but noise: halo patterns of few counts (Poisson) over noise maps."""
    like = fit_like(ds, rng, noise=False)
    valid = like["fit_mask"].values
    halo = np.where(valid, ds["true_patterns"].values[1], 0.0)
    halo /= halo.sum()
    cutoff = 1.028 / ds.attrs["probe_fwhm_nm"] * ds.attrs["scan_step_nm"]
    shape = like["maps"].shape[1:]
    return xr.Dataset(
        {
            "maps": (
                ("component", "scan_y", "scan_x"),
                np.stack([noise_map(shape, cutoff, rng, mean, sd) for _ in counts]),
            ),
            "diffractions": (
                ("component", "k_y", "k_x"),
                np.stack([rng.poisson(halo * n) / n for n in counts]),
            ),
            "diffraction_sigma": (
                ("component", "k_y", "k_x"),
                np.stack([np.sqrt(halo / n) for n in counts]),
            ),
            "fit_mask": like["fit_mask"],
        },
        coords=like.coords,
        attrs=like.attrs,
    )


HALO_COUNTS = (1000, 3000, 10000, 30000, 100000)


@pytest.mark.parametrize("sigma", ["given", "measured"])
def test_speckled_halo_is_amorphous_and_weak_precipitates_crystalline(scan, sigma):
    """Speckle gives a halo of few counts a crystallinity well above the threshold; judged
    against its noise it is amorphous, while precipitates with noise of the same order
    stay crystalline, whether the fit gives ``diffraction_sigma`` or not."""
    rng = np.random.default_rng(5)
    halos, precipitates = noise_only(scan, HALO_COUNTS, rng), fit_like(scan, rng)
    both = xr.concat([halos, precipitates], "component", data_vars="minimal")
    if sigma == "measured":
        both = both.drop_vars("diffraction_sigma")
    classes = classify(both)
    n = len(HALO_COUNTS)
    score = classes["crystallinity"].values
    significance = classes["crystallinity_significance"].values
    print("crystallinity", score.round(2), "significance", significance.round(1))
    assert (score[:2] > 0.6).all()  # what the crystallinity alone would call crystals
    assert (significance[:n] < 1.0).all()
    assert (classes["kind"].values[:n] == "amorphous").all()
    assert (significance[n:] > 6.0).all()
    assert (classes["kind"].values[n:] == "crystalline").all()


def test_noise_only_gives_no_precipitate(scan):
    """Noise maps and halo diffractions: nothing crystalline, no precipitate; even with every
    component forced crystalline, no region of noise passes as a precipitate, and without
    the significance test none smaller than the probe would."""
    rng = np.random.default_rng(7)
    dense = noise_only(scan, HALO_COUNTS, rng)
    sparse = noise_only(scan, HALO_COUNTS, rng, mean=30.0, sd=100.0)  # mostly zero, spiky
    for result in (dense, sparse):
        classes = classify(result)
        assert (classes["class_label"].values < 0).all()
        assert classes.sizes["precipitate"] == 0
        forced = classify(result, crystallinity_threshold=0.0, significance_threshold=-np.inf)
        assert forced.sizes["precipitate"] == 0, forced["precipitate_significance"].values
    loose = classify(
        sparse, crystallinity_threshold=0.0, significance_threshold=-np.inf, region_significance=0
    )
    probe_nm2 = np.pi * (scan.attrs["probe_fwhm_nm"] / 2) ** 2
    assert loose.sizes["precipitate"] > 0  # the regions the significance test removes
    assert (loose["area_nm2"].values >= probe_nm2).all()
    assert loose.attrs["dropped_regions"] > 0
    assert loose.attrs["min_precipitate_area_px"] == pytest.approx(
        probe_nm2 / scan.attrs["scan_step_nm"] ** 2
    )


def test_one_row_per_precipitate(scan):
    """The ground truth and a noisy fit-like copy: one table row per precipitate, at its
    centre, none smaller than the probe; a precipitate split between two components (a
    core and its rim) is one row, two of one phase seen by two components stay two."""
    fwhm = scan.attrs["probe_fwhm_nm"]
    probe_nm2 = np.pi * (fwhm / 2) ** 2
    truth = truth_as_result(scan).assign_attrs(probe_fwhm_nm=fwhm)
    noisy = fit_like(scan, np.random.default_rng(3))
    for result in (truth, noisy):
        classes = classify(result)
        assert classes.sizes["precipitate"] == scan.sizes["source"] - 2
        nearest = [d for _, d in centres_found(scan, classes, fwhm)]
        assert max(nearest) < fwhm, nearest
        assert (classes["area_nm2"].values >= probe_nm2).all()
    # split the largest precipitate into a core and a rim, two components of one pattern
    j = int(np.nanargmax(scan["true_radius"].values))
    step = scan.attrs["scan_step_nm"]
    yy, xx = np.indices(noisy["maps"].shape[1:])
    centre = [float(scan[f"true_centre_{a}"][j]) / step - 0.5 for a in ("y", "x")]
    core = np.hypot(yy - centre[0], xx - centre[1]) < float(scan["true_radius"][j]) / step / 2
    m = noisy["maps"].values[j - 2]
    pieces = noisy.isel(component=[j - 2, j - 2]).copy(deep=True)
    pieces["maps"].values[:] = [np.where(core, m, 0.0), np.where(core, 0.0, m)]
    split = xr.concat([noisy.drop_isel(component=j - 2), pieces], "component", data_vars="minimal")
    classes = classify(split)
    assert classes.sizes["precipitate"] == scan.sizes["source"] - 2
    assert max(d for _, d in centres_found(scan, classes, fwhm)) < fwhm


@pytest.mark.parametrize("same_class", [False, True])
def test_a_precipitate_repeated_in_a_mixed_map_is_one_row(scan, same_class):
    """A component that holds a share of another precipitate's diffraction repeats that
    precipitate's region, weaker, in its map: one row, not two, whether the mixed component
    is of another phase or of the same phase in another orientation; where the counts there
    are comparable (two crystals stacked in the beam) both stay."""
    noisy = fit_like(scan, np.random.default_rng(4))
    plain = classify(noisy)
    assert plain.sizes["precipitate"] == scan.sizes["source"] - 2
    peak = noisy["maps"].values.reshape(noisy.sizes["component"], -1).max(axis=1)
    cls = scan["true_class"].values[2:]
    if same_class:  # the two of a phase whose diffractions are least alike unrotated
        true = scan["true_patterns"].values[2:].reshape(cls.size, -1)
        unit = true / np.linalg.norm(true, axis=1, keepdims=True)
        pairs = [(i, j) for i in range(cls.size) for j in range(cls.size)
                 if i != j and cls[i] == cls[j] and peak[i] > peak[j]]  # fmt: skip
        big, small = min(pairs, key=lambda p: float(unit[p[0]] @ unit[p[1]]))
    else:  # the brightest, and the faintest of another phase
        big = int(np.argmax(peak))
        small = min((j for j in range(cls.size) if cls[j] != cls[big]), key=lambda j: peak[j])
    label = plain["class_label"].values
    assert (label[big] == label[small]) == same_class  # the case the parameter names
    fwhm = scan.attrs["probe_fwhm_nm"]
    where = np.array([float(scan[f"true_centre_{a}"][big + 2]) for a in ("y", "x")])
    for share, rows_there in ((0.3, 1), (1.0, 2)):
        mixed = noisy.copy(deep=True)
        mixed["maps"].values[small] += share * noisy["maps"].values[big]
        classes = classify(mixed)
        assert (classes["class_label"].values == label).all()
        at = np.stack([classes["centroid_y_nm"].values, classes["centroid_x_nm"].values], -1)
        there = np.hypot(*(at - where).T) < fwhm
        assert there.sum() == rows_there, (share, classes["precipitate_component"].values)
        assert big in classes["precipitate_component"].values[there]  # the owner's row stays


def test_probe_area_from_the_fits_attributes(scan):
    result = truth_as_result(scan)  # 0.3 nm steps
    assert probe_area_px(result) == 4.0
    for attrs, fwhm_px in (
        ({"probe_fwhm_nm": 0.9}, 3.0),
        ({"probe_fwhm_nm": float("nan"), "map_cutoff_inv_nm": 1.028 / 0.6}, 2.0),
        ({"map_cutoff_inv_nm": float("nan"), "map_cutoff_cycles_per_px": 1.028 / 5}, 5.0),
    ):
        assert probe_area_px(result.assign_attrs(attrs)) == pytest.approx(np.pi * fwhm_px**2 / 4)


# the smallest radius (nm) at which every precipitate of these scans was crystalline
DETECTED_RADIUS_NM = {1500: 1.3, 5000: 0.9, 20000: 0.8}


def test_the_default_linkage_keeps_a_close_phase_apart_from_its_neighbour():
    """Distances between noise-corrected components as measured in a kinematic fit (4,000
    e/pattern, seed 2): three components of CuZr2 0-0.02 apart, and the one CuZr component
    0.12, 0.12 and 0.17 from them (the two phases' true patterns are 0.17 apart). Average
    linkage joins it to them (mean 0.137, under the 0.15 cut); complete linkage, the
    default, asks every pair of a class to lie within the cut and keeps two classes."""
    d = np.array([
        [0.00, 0.12, 0.12, 0.17],
        [0.12, 0.00, 0.00, 0.02],
        [0.12, 0.00, 0.00, 0.01],
        [0.17, 0.02, 0.01, 0.00],
    ])  # fmt: skip
    params = inspect.signature(classify).parameters
    default = params["linkage"].default
    cut = (params["min_distance"].default, params["max_distance"].default)
    assert cut == (0.15, 0.15)  # the measured distances straddle this cut
    labels, *_ = _cluster(1.0 - d, default, None, None, *cut)
    assert default == "complete" and len(set(labels)) == 2 and labels[0] != labels[1]
    assert (labels[1:] == labels[1]).all()
    labels, *_ = _cluster(1.0 - d, "average", None, None, *cut)
    assert len(set(labels)) == 1


def test_default_cut_across_doses_phases_and_rotations():
    """Fit-like components of 2-5 phases at random rotations and 1,500-20,000 e/pattern: the
    crystalline ones fall into their phases with the default cut (adjusted Rand index 1 in
    all 120 such scans and 30 of one phase when this was written; 0.95 asked), and every
    precipitate above the detection limit of its dose is crystalline."""
    rng = np.random.default_rng(0)
    rows = []
    for dose in DETECTED_RADIUS_NM:
        for phases in (2, 3, 4, 5):
            ds = simulate_scan(
                scan=(48, 48), detector=(64, 64), precipitates=2 * phases + 1, phases=phases,
                seed=100 * phases + dose, dose=dose, precipitate_diameter_nm=(1.0, 5.0),
            )  # fmt: skip
            classes = classify(fit_like(ds, rng))
            label = classes["class_label"].values
            truth = ds["true_class"].values[2:]
            radius = ds["true_radius"].values[2:]
            found = label >= 0
            ari = adjusted_rand(truth[found], label[found])
            rows.append((dose, phases, ari, found.sum(), found.size))
            assert ari >= 0.95, (dose, phases, label, truth)
            assert classes.sizes["class"] == len(set(truth[found]))
            assert found[radius >= DETECTED_RADIUS_NM[dose]].all(), (dose, radius, label)
    print(
        "\n".join(
            f"{d:6d} e  {p} phases  ARI {a:.2f}  crystalline {f}/{n}" for d, p, a, f, n in rows
        )
    )


def test_noise_correction_brings_noisy_copies_of_one_pattern_together(scan):
    """Poisson copies of one precipitate's pattern: counting noise alone lowers their
    correlation (more at fewer counts); corrected for it they correlate as the noise-free
    patterns do, and two different phases keep their noise-free distance."""
    rng = np.random.default_rng(3)
    like = fit_like(scan, rng, noise=False)
    valid = like["fit_mask"].values
    centre = tuple(like.attrs["masks"]["bright_field_disc"]["centre_px"])
    disc = like.attrs["masks"]["bright_field_disc"]["radius_px"]
    classes = scan["true_class"].values
    one = int(np.flatnonzero(classes == 0)[0])
    other = int(np.flatnonzero(classes == 1)[0])
    clean = np.stack([like["diffractions"].values[i - 2] for i in (one, other)])
    counts = (400, 400, 20000, 20000)
    source = [0, 0, 0, 1]  # three copies of one phase, one of another
    noisy = np.stack([rng.poisson(clean[s] * n) / n for s, n in zip(source, counts, strict=True)])
    sigma = np.stack([np.sqrt(clean[s] / n) for s, n in zip(source, counts, strict=True)])
    opts = dict(central_mask_px=disc, valid=valid, smooth_px=1.5)
    rho_clean, _, _ = phase_similarity(clean, centre, **opts)
    rho, _, _ = phase_similarity(noisy, centre, **opts)
    significance = crystallinity_significance(noisy, centre, sigma=sigma, **opts)
    corrected = noise_corrected(rho, significance)
    print("raw", (1 - rho).round(3), "corrected", (1 - corrected).round(3), sep="\n")
    assert 1 - rho[0, 1] > 0.1  # noise alone pulls two copies of one pattern apart
    assert 1 - rho[0, 1] > 1 - rho[0, 2] > 1 - rho[2, 2]  # fewer counts, farther apart
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert 1 - corrected[i, j] < 0.03, (i, j)
    between = 1 - rho_clean[0, 1]
    assert between > 0.2
    # the maximum over rotations finds some correlation in noise: a little closer, not merged
    assert abs((1 - corrected[2, 3]) - between) < 0.1
    assert abs((1 - corrected[0, 3]) - between) < 0.1
    np.testing.assert_allclose(np.diag(corrected), 1.0)
    assert noise_corrected(rho, np.full(4, np.inf)) == pytest.approx(rho)


def test_default_cut_separates_close_phases_and_joins_noisy_copies(scan):
    """Two phases whose noise-free patterns are 0.15-0.2 apart (the kinematic generator's
    CuZr and CuZr2 are 0.17 apart; the old default cut, 0.2-0.24, merged them), three
    Poisson copies of each at 5,000 counts: the default classification finds exactly the
    two phases. (At 1,500 counts the noise estimate is conservative and the correction
    overshoots: the two phases came out 0.06-0.09 apart and merged.)"""
    rng = np.random.default_rng(4)
    like = fit_like(scan, rng, noise=False)
    classes = scan["true_class"].values[2:]
    clean = like["diffractions"].values
    a = clean[np.flatnonzero(classes == 0)[0]]
    close = 0.58 * a + 0.42 * clean[np.flatnonzero(classes == 1)[0]]

    def fit_of(patterns, sigma=None):
        data = {
            "maps": (("component", "scan_y", "scan_x"), like["maps"].values[: len(patterns)]),
            "diffractions": (("component", "k_y", "k_x"), patterns),
            "fit_mask": like["fit_mask"],
        }
        if sigma is not None:
            data["diffraction_sigma"] = (("component", "k_y", "k_x"), sigma)
        return xr.Dataset(data, coords=like.coords, attrs=like.attrs)

    apart = 1 - float(classify(fit_of(np.stack([a, close])))["similarity"][0, 1])
    assert 0.15 < apart < 0.2, apart
    counts = 5000
    truth = np.repeat([0, 1], 3)
    patterns = np.stack([a, close])[truth]
    noisy = rng.poisson(patterns * counts) / counts
    label = classify(fit_of(noisy, np.sqrt(patterns / counts)))["class_label"].values
    assert (label >= 0).all()
    assert adjusted_rand(truth, label) == 1.0, label
