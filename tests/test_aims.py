"""The recovery aims of issue 10 on the one cell of the validation table where they hold.

The README's validation table (``python -m benchmarks.recovery``) is the full grid; this slow
test holds the cell where every aim is met (our generator, 20,000 e/pattern), so that a
change that loses it fails ``pytest -m slow``.
"""

from __future__ import annotations

import argparse

import dask
import pytest

from benchmarks import recovery

pytest.importorskip("sklearn", reason="the expert scikit-learn row needs scikit-learn")

#: The issue's recovery aims for a cell at or above 1,500 e/pattern (README, "Where we stand").
AIMS = {"cosine_mean": 0.93, "cosine_min": 0.85, "ari": 0.95, "found": 0.10, "holes": 0.15}


@pytest.mark.slow
def test_the_recovery_aims_hold_where_the_table_says_they_do():
    """The one cell of the README's validation table where every aim is met (our generator,
    20,000 e/pattern, 2.9 px probe, soft discs; both seeds): pattern and map cosine, ARI of
    the default cut, precipitates found, worst hole depth, and the defaults at least as good
    as primitive NMF and the expert scikit-learn NMF in mean cosines and ARI."""
    runs: dict[str, list[dict]] = {"defaults": [], "primitive": [], "sklearn": []}
    with dask.config.set(scheduler="threads", num_workers=2):
        for seed in (1, 2):
            args = argparse.Namespace(seed=seed, scan="48x48", detector="48x48")
            ds = recovery.make_scan("ours", 20000.0, 2.9, "soft", args, 8, 3)
            used = recovery.fitted_pixels(ds)
            for name, cell in runs.items():
                cell.append(recovery.score(ds, name, used))
    got = {name: recovery.pooled(cell) for name, cell in runs.items()}
    ours = got["defaults"]
    print({n: (r["d"].mean(), r["m"].mean(), r["ari"], r["found"]) for n, r in got.items()})
    for key in ("d", "m"):
        assert ours[key].mean() >= AIMS["cosine_mean"] and ours[key].min() >= AIMS["cosine_min"]
    assert ours["ari"] >= AIMS["ari"]
    assert abs(ours["found"] - ours["visible"]) <= AIMS["found"] * ours["visible"]
    assert ours["holes"] <= AIMS["holes"]
    for other in ("primitive", "sklearn"):
        assert ours["d"].mean() >= got[other]["d"].mean()
        assert ours["m"].mean() >= got[other]["m"].mean()
        assert ours["ari"] >= got[other]["ari"]
