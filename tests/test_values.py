from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from dask_stemnmf._kernels.values import chunk_value_stats
from dask_stemnmf.values import value_report_from, value_stats

from . import naive


def bad_values(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(5, 4, (9, 7, 5, 6)).astype(dtype)
    if np.dtype(dtype).kind == "f":
        x[1, 2, 3, 4] = np.nan
        x[4, 4, 0, 0] = np.inf
        x[8, 6, 4, 5] = -np.inf
        x[0, 0, 0, 1] = np.nan
    return x


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "int32"])
def test_kernel_matches_a_python_loop(dtype):
    x = bad_values(dtype)
    np.testing.assert_allclose(chunk_value_stats(x), naive.value_stats(x))


@pytest.mark.parametrize("chunks", [(9, 7, 5, 6), (2, 3, 5, 6), ((4, 1, 4), (3, 4), 5, 6)])
@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_graph_equals_reference_whatever_the_chunking(chunks, scheduler):
    x = bad_values("float32")
    with dask.config.set(scheduler=scheduler):
        (stats,) = dask.compute(value_stats(da.from_array(x, chunks=chunks)))
    np.testing.assert_allclose(stats, naive.value_stats(x))
    report = value_report_from(stats, x.size)
    assert (report.n_nan, report.n_inf) == (2, 2)
    assert not report.ok
    assert any("NaN" in line for line in report.problems())
    assert any("negative" in line for line in report.problems())


def test_building_the_graph_computes_nothing(raise_if_dask_computes):
    with dask.config.set(scheduler=raise_if_dask_computes):
        value_stats(da.ones((10, 10, 4, 4), chunks=(3, 3, 4, 4)))
    assert raise_if_dask_computes.calls == 0


def test_all_nan_chunk_has_no_range():
    stats = chunk_value_stats(np.full((3, 3), np.nan))
    report = value_report_from(stats, 9)
    assert report.n_nan == 9 and np.isnan(report.minimum) and np.isnan(report.maximum)


@pytest.mark.parametrize("chunks", [(9, 7, 5, 6), (2, 3, 5, 6), ((4, 1, 4), (3, 4), 5, 6)])
def test_pixel_sums_equal_numpy(chunks):
    from dask_stemnmf.values import pixel_sums

    x = np.random.default_rng(3).integers(0, 60000, (9, 7, 5, 6)).astype("uint16")
    (sums,) = dask.compute(pixel_sums(da.from_array(x, chunks=chunks), split_every=2))
    flat = x.reshape(63, -1).astype(np.float64)
    np.testing.assert_array_equal(sums[0], flat.sum(axis=0))
    np.testing.assert_allclose(sums[1], (flat**2).sum(axis=0), rtol=1e-15)
