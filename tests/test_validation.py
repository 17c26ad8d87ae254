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
            k, map_resolution_nm=None, diffraction_continuity=False
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


def test_the_recovery_grid_runs_every_cell_and_prints_one_row_per_method(capsys):
    from benchmarks import recovery

    recovery.main([
        "--generators", "ours", "--doses", "4000", "--scan", "24x24", "--detector", "32x32",
        "--precipitates", "3", "--phases", "1,2", "--methods", "primitive,PCA",
    ])  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    header, rule, rows = lines[0], lines[1], lines[2:]
    width = header.count("|")
    assert rule.count("|") == width and all(r.count("|") == width for r in rows)
    cells = [r.split("|")[1:8] for r in rows]
    assert [(c[5].strip(), c[6].strip()) for c in cells] == [
        ("1", "primitive"), ("1", "PCA"), ("2", "primitive"), ("2", "PCA"),
    ]  # fmt: skip
    own = [r.split("|")[9].strip() for r in rows]
    assert own[1] == own[3] == "-" and 0.0 < float(own[0]) <= 1.0 + 1e-9
