"""The defaults on data we did not simulate: the independent kinematic generator.

The README's validation table (``python -m benchmarks.recovery``) is the full grid; here one
cell of it, so that a change that loses the constrained defaults' lead over primitive NMF on
the second generator fails the suite.
"""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest

from dask_stemnmf import ConstrainedNMF, hole_depth, hole_depth_of_truth, match_to_truth

pytest.importorskip("diffsims", reason="the kinematic generator needs the validation extra")

from benchmarks.kinematic import kinematic_scan
from benchmarks.recovery import visible


@pytest.fixture(scope="module")
def scan():
    return kinematic_scan(
        seed=1, scan=(40, 40), detector=(40, 40), precipitates=6, phases=2, dose=4000.0,
        psf_sigma_px=1.0, psf_tail=0.05, disc_edge_px=1.0, chunks=(20, 40),
    ).persist()  # fmt: skip


def test_defaults_beat_primitive_nmf_on_the_kinematic_generator(scan):
    k = scan.sizes["source"]
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = ConstrainedNMF(k).fit(scan).result_
        primitive = ConstrainedNMF(
            k, map_resolution_nm=None, diffraction_continuity=False, merge_threshold=None,
            separate_halo=False,
        ).fit(scan).result_
    used = default["fit_mask"].values
    seen = visible(scan)
    scores = {}
    for name, result in (("default", default), ("primitive", primitive)):
        m = match_to_truth(result, scan, pixels=used)
        scores[name] = (
            float(m["diffraction_cosine"].values[seen].mean()),
            float(m["map_cosine"].values[seen].mean()),
            float(hole_depth(result, scan, match=m).attrs["worst_hole_depth"]),
        )
    print(scores)
    assert scores["default"][0] >= scores["primitive"][0] - 0.01
    assert scores["default"][1] > scores["primitive"][1] + 0.05
    # the true patterns have no holes; a fit's worst component is measured against them
    assert hole_depth_of_truth(scan).attrs["worst_hole_depth"] < 0.1
    assert np.isfinite(scores["default"][2])


def _table(capsys):
    lines = capsys.readouterr().out.strip().splitlines()
    header, rule, rows = lines[0], lines[1], lines[2:]
    width = header.count("|")
    assert rule.count("|") == width and all(r.count("|") == width for r in rows)
    names = [c.strip() for c in header.split("|")[1:-1]]
    return [dict(zip(names, (c.strip() for c in r.split("|")[1:-1]), strict=True)) for r in rows]


def test_the_recovery_grid_runs_every_cell_and_prints_one_row_per_method(capsys):
    from benchmarks import recovery

    recovery.main([
        "--generators", "ours", "--doses", "4000", "--scan", "24x24", "--detector", "32x32",
        "--precipitates", "3", "--phases", "1,2", "--methods", "primitive,PCA",
    ])  # fmt: skip
    rows = _table(capsys)
    assert [(r["phases"], r["method"]) for r in rows] == [
        ("1", "primitive"), ("1", "PCA"), ("2", "primitive"), ("2", "PCA"),
    ]  # fmt: skip
    own = [r["own share"] for r in rows]
    assert own[1] == own[3] == "-" and 0.0 < float(own[0]) <= 1.0 + 1e-9


def test_pooled_seeds_take_every_precipitate_and_the_means_of_the_rest():
    from benchmarks.recovery import pooled

    one = {"d": np.array([0.9, 0.8]), "m": np.array([0.7, 0.6]), "own": 0.5, "ari": 1.0,
           "holes": 0.1, "s": 2.0, "dips": 10, "iters": 30, "found": 2, "visible": 2}
    two = {"d": np.array([0.5]), "m": np.array([0.4]), "own": 0.3, "ari": float("nan"),
           "holes": 0.3, "s": 4.0, "dips": 20, "iters": 50, "found": 0, "visible": 1}  # fmt: skip
    got = pooled([one, two])
    np.testing.assert_allclose(got["d"], [0.9, 0.8, 0.5])
    np.testing.assert_allclose(got["m"], [0.7, 0.6, 0.4])
    assert got["ari"] == 1.0  # the seed without an ARI is left out
    np.testing.assert_allclose([got["own"], got["holes"], got["s"]], [0.4, 0.2, 3.0])
    assert (got["dips"], got["iters"], got["found"], got["visible"]) == (15, 40, 2, 3)


def test_the_recovery_grid_pools_seeds_into_one_row(capsys):
    from benchmarks import recovery

    args = ["--generators", "ours", "--doses", "4000", "--scan", "24x24", "--detector", "32x32",
            "--precipitates", "3", "--phases", "1", "--methods", "primitive"]  # fmt: skip
    recovery.main([*args, "--seed", "1"])
    first = _table(capsys)
    recovery.main([*args, "--seed", "2"])
    second = _table(capsys)
    recovery.main([*args, "--seed", "1", "--seeds", "2"])
    (both,) = _table(capsys)
    assert both["seeds"] == "2" and first[0]["seeds"] == "1"
    found = [int(r["found / visible"].split("/")[1]) for r in (first[0], second[0])]
    assert int(both["found / visible"].split("/")[1]) == sum(found)
    worst = min(float(r["pattern cos mean / min"].split("/")[1]) for r in (first[0], second[0]))
    assert float(both["pattern cos mean / min"].split("/")[1]) == worst
