from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dask_stemnmf import InputError, classify, decompose, match_to_truth, simulate_scan
from dask_stemnmf.classify import crystallinity, cut_height
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
