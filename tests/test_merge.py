"""Merging duplicate components and seeding the freed one from the residual."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

from dask_stemnmf import ConstrainedNMF, simulate_scan
from dask_stemnmf.errors import ConvergenceWarning, InputError
from dask_stemnmf.nmf.merge import duplicate_pair, merge_columns, residual_seed
from dask_stemnmf.nmf.stats import Transform


def _unit(v):
    return v / v.sum(axis=0)


def test_duplicate_pair_is_the_most_alike_pair_above_the_threshold():
    rng = np.random.default_rng(0)
    base = rng.random((50, 3))
    S = _unit(np.column_stack([base, base[:, 1] + 0.01 * rng.random(50), base[:, 1]]))
    S[:, 4] = 0.0  # a dead column is never a duplicate
    assert duplicate_pair(S, 0.95) == (1, 3)
    cos = S[:, 1] @ S[:, 3] / np.linalg.norm(S[:, 1]) / np.linalg.norm(S[:, 3])
    assert duplicate_pair(S, float(cos) + 1e-6) is None
    others = S[:, :3]
    norms = np.linalg.norm(others, axis=0)
    pairs = ((0, 1), (0, 2), (1, 2))
    best = max(others[:, i] @ others[:, j] / norms[i] / norms[j] for i, j in pairs)
    assert duplicate_pair(others, float(best) + 1e-9) is None
    assert duplicate_pair(others, float(best) - 1e-9) is not None
    assert duplicate_pair(S[:, :1], 0.5) is None


def test_merging_a_true_duplicate_keeps_the_model():
    rng = np.random.default_rng(1)
    S = _unit(rng.random((40, 3)))
    S[:, 2] = S[:, 0]
    C = rng.random((6, 5, 3)).astype(np.float32)
    lazy = da.from_array(C, chunks=(3, 5, 3))
    merged, S2, weights = merge_columns(lazy, S, 0, 2)
    got = merged.compute()
    assert merged.chunks == lazy.chunks
    np.testing.assert_allclose(weights, C[..., [0, 2]].sum(axis=(0, 1)), rtol=1e-5)
    np.testing.assert_allclose(got[..., 2], 0.0)
    np.testing.assert_allclose(S2.sum(axis=0), 1.0)
    before = C.reshape(-1, 3) @ S.T
    after = got.reshape(-1, 3) @ S2.T
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-7)


def test_merged_pattern_is_the_map_weighted_mean():
    S = _unit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    C = np.zeros((2, 2, 2), dtype=np.float32)
    C[..., 0], C[..., 1] = 3.0, 1.0
    _, S2, _ = merge_columns(da.from_array(C), S, 0, 1)
    np.testing.assert_allclose(S2[:, 0], 0.75 * S[:, 0] + 0.25 * S[:, 1])


def test_the_seed_lies_on_the_source_the_model_lacks():
    """Rank-2 model of rank-3 counts: the seed sits on the missing blob, with its pattern."""
    rng = np.random.default_rng(2)
    ny, nx, m = 24, 20, 60
    yy, xx = np.mgrid[:ny, :nx]
    maps = np.stack([
        np.full((ny, nx), 400.0),
        200.0 * (xx / nx),
        300.0 * np.exp(-((yy - 15) ** 2 + (xx - 6) ** 2) / (2 * 2.0**2)),
    ], axis=-1)  # fmt: skip
    patterns = _unit(rng.random((m, 3)) ** 4)
    counts = rng.poisson(maps.reshape(-1, 3) @ patterns.T).astype(np.float32)
    data = da.from_array(counts.reshape(ny, nx, m), chunks=(8, 10, m))
    known = da.from_array(maps[..., :2].astype(np.float32), chunks=(8, 10, 2))
    blob, pattern = residual_seed(data, known, patterns[:, :2], probe_px=3.0)
    peak = np.unravel_index(np.argmax(blob), blob.shape)
    assert abs(peak[0] - 15) <= 1 and abs(peak[1] - 6) <= 1
    cos = pattern @ patterns[:, 2] / np.linalg.norm(pattern) / np.linalg.norm(patterns[:, 2])
    assert cos > 0.9
    np.testing.assert_allclose(pattern.sum(), 1.0)
    # the amplitude fits the missing source's map at its centre to a third
    assert 100 < blob[15, 6] < 500


def test_the_seed_respects_the_fitted_pixels():
    """Only fitted pixels count: the seed's pattern is the excess on fitted pixel 7."""
    rng = np.random.default_rng(3)
    lam = np.full((6, 6, 10), 50.0)
    lam[1:3, 3:5, 7] += 400.0  # a source the model lacks, on a fitted pixel
    lam[4:6, 0:2, 3] += 900.0  # a brighter one on a pixel the fit leaves out
    counts = rng.poisson(lam).astype(np.float32)
    data = da.from_array(counts, chunks=(3, 6, 10))
    pixels = np.array([1, 2, 5, 7])
    S = np.full((4, 1), 0.25)
    C = da.from_array(np.full((6, 6, 1), 200.0, dtype=np.float32), chunks=(3, 6, 1))
    blob, pattern = residual_seed(data, C, S, 1.0, Transform(pixels=pixels))
    assert blob.shape == (6, 6) and pattern.shape == (4,)
    assert int(np.argmax(pattern)) == 3  # pixel 7
    peak = np.unravel_index(np.argmax(blob), blob.shape)
    assert 1 <= peak[0] <= 2 and 3 <= peak[1] <= 4


@pytest.fixture(scope="module")
def spare_scan():
    return simulate_scan(
        seed=4, scan=(32, 32), detector=(32, 32), precipitates=3, phases=2, dose=4000.0,
        chunks=(16, 32),
    )  # fmt: skip


def test_a_fit_merges_duplicates_and_records_when(spare_scan):
    """Two components more than the sources: spares copy others and are merged."""
    k = spare_scan.sizes["source"] + 2
    # merges come on the loss's plateau: the fill's full step makes its chatter reach it
    # within max_iter on this small scan (with the quarter step the loss falls smoothly by
    # about 1e-5 per iteration for longer)
    full = {"foreign_fill_step": 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        merged = ConstrainedNMF(k, **full).fit(spare_scan).result_
        plain = ConstrainedNMF(k, merge_threshold=None, **full).fit(spare_scan).result_
    at = merged.attrs["merged_at_iterations"]
    assert plain.attrs["merged_at_iterations"] == []
    assert 1 <= len(at) <= 3 and all(0 < i < merged.sizes["iteration"] for i in at)
    assert merged.attrs["merge_threshold"] == 0.9
    # a merge trades (almost) nothing in fit: the loss returns to where it was
    loss = merged["loss"].values
    assert loss[-1] <= loss[at[0] - 1] * 1.01
    assert loss[-1] <= plain["loss"].values[-1] * 1.01
    # every component is alive after the merges
    assert (merged["maps"].values.reshape(k, -1).sum(axis=1) > 0).all()


@pytest.mark.parametrize(
    ("kw", "flag"), [({"merge_threshold": 0.0}, "merge_threshold"),
                     ({"merge_threshold": 1.5}, "merge_threshold"),
                     ({"max_merges": -1}, "max_merges")],
)  # fmt: skip
def test_merge_parameters_are_checked(small_scan_lazy, kw, flag):
    with pytest.raises(InputError, match=flag):
        ConstrainedNMF(3, **kw).fit(small_scan_lazy)


def test_job_files_reach_the_merge_parameters():
    from dask_stemnmf.config import resolve_config

    assert resolve_config()["nmf"]["merge_threshold"] == 0.9
    got = resolve_config({"nmf": {"merge_threshold": None, "max_merges": 1}})["nmf"]
    assert got["merge_threshold"] is None and got["max_merges"] == 1
    with pytest.raises(InputError, match=r"nmf\.merge_threshold"):
        resolve_config({"nmf": {"merge_threshold": 1.5}})


def test_a_run_resumed_after_a_merge_ends_where_an_undisturbed_one_does(spare_scan):
    """The checkpoint carries the merges and the fill's restart."""
    k = spare_scan.sizes["source"] + 2
    states = []

    def keep(state):
        states.append({**state, "C": np.asarray(state["C"])})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        calm = ConstrainedNMF(
            k, checkpoint=keep, checkpoint_every=10, foreign_fill_step=1.0
        ).fit(spare_scan).result_  # a full step: merges within max_iter (above)
        after = [s for s in states if s["merges"]]
        assert after, "no checkpoint after a merge"
        hit = ConstrainedNMF(k, foreign_fill_step=1.0).fit(spare_scan, resume=after[0]).result_
    assert hit.attrs["merged_at_iterations"] == calm.attrs["merged_at_iterations"]
    np.testing.assert_allclose(hit["loss"].values, calm["loss"].values, rtol=1e-6)
    np.testing.assert_allclose(hit["diffractions"].values, calm["diffractions"].values,
                               rtol=1e-4, atol=1e-7)  # fmt: skip
