from __future__ import annotations

import tracemalloc

import dask
import numpy as np
import pytest

from dask_stemnmf import InputError, open_4dstem, simulate_scan
from dask_stemnmf.physics import bragg_disc_radius_inv_nm

from . import naive

KW = {"scan": (24, 20), "detector": (32, 32), "precipitates": 5, "phases": 2}


@pytest.mark.parametrize("chunks", [(24, 20), (7, 13), (5, 4), (24, 1)])
def test_same_data_whatever_the_chunking(small_scan_lazy, chunks):
    other = simulate_scan(chunks=chunks, **KW)
    assert other["intensity"].data.chunks[0][0] == chunks[0]
    np.testing.assert_array_equal(other["intensity"].values, small_scan_lazy["intensity"].values)
    np.testing.assert_array_equal(other["true_maps"].values, small_scan_lazy["true_maps"].values)


def test_same_data_on_a_cluster_of_processes(tmp_path, small_store):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        ds = simulate_scan(tmp_path / "c.zarr", chunks=(6, 7), **KW)
        values = ds["intensity"].values
    np.testing.assert_array_equal(values, open_4dstem(small_store)["intensity"].values)


def test_seeds_differ_and_repeat():
    a = simulate_scan(seed=1, **KW)
    b = simulate_scan(seed=2, **KW)
    assert not np.array_equal(a["true_centre_y"].values[2:], b["true_centre_y"].values[2:])
    assert not np.array_equal(a["intensity"].values, b["intensity"].values)
    np.testing.assert_array_equal(
        a["intensity"].values, simulate_scan(seed=1, **KW)["intensity"].values
    )


def test_noise_free_data_is_the_sum_of_maps_times_patterns():
    ds = simulate_scan(noise=False, **KW)
    assert ds["intensity"].dtype == np.float32
    expected = np.einsum(
        "syx,sab->yxab",
        ds["true_maps"].values.astype(float),
        ds["true_patterns"].values.astype(float),
    )
    np.testing.assert_allclose(
        ds["intensity"].values, expected, rtol=1e-5, atol=1e-6 * expected.max()
    )


def test_counts_are_poisson_around_the_expectation():
    ds = simulate_scan(dose=2000.0, **KW)
    lam = np.einsum(
        "syx,sab->yxab",
        ds["true_maps"].values.astype(float),
        ds["true_patterns"].values.astype(float),
    )
    counts = ds["intensity"].values.astype(float)
    assert ds["intensity"].dtype == np.uint16
    keep = lam > 5
    z = (counts[keep] - lam[keep]) / np.sqrt(lam[keep])
    assert abs(z.mean()) < 0.02
    assert 0.95 < z.var() < 1.05
    # the dose is electrons per pattern
    assert counts.sum(axis=(2, 3)).mean() == pytest.approx(2000.0, rel=0.01)


def test_dark_noise_adds_variance():
    quiet = simulate_scan(**KW)["intensity"].values.astype(float)
    noisy = simulate_scan(dark_noise=3.0, **KW)["intensity"].values.astype(float)
    assert noisy.var() > quiet.var()
    assert noisy.min() >= 0


def test_direct_beam_carries_most_counts_and_sits_where_it_says(small_scan_lazy):
    ds = small_scan_lazy
    maps = ds["true_maps"].values
    assert maps[0].sum() / maps.sum() > 0.5
    counts = ds["intensity"].values.astype(float).sum(axis=(0, 1))
    beam = ds["true_patterns"].values[0]
    cy, cx = ds.attrs["beam_centre_px"]
    yy, xx = np.indices(beam.shape)
    assert (beam * yy).sum() == pytest.approx(cy, abs=0.02)
    assert (beam * xx).sum() == pytest.approx(cx, abs=0.02)
    # in the data too: the brightest region is the disc, more than half of all counts
    disc = naive.disc(beam.shape, cy, cx, 1.2 * bragg_disc_radius_inv_nm(200, 1.5) / 0.4)
    assert (counts * (disc > 0)).sum() / counts.sum() > 0.5


def test_disc_radius_follows_the_convergence_angle():
    ds = simulate_scan(scan=(4, 4), detector=(128, 128), precipitates=0)
    beam = ds["true_patterns"].values[0]
    dk = float(ds["k_x"][1] - ds["k_x"][0])
    area = (beam > 0.5 * beam.max()).sum()
    radius_inv_nm = np.sqrt(area / np.pi) * dk
    assert radius_inv_nm == pytest.approx(bragg_disc_radius_inv_nm(200, 1.5), rel=0.05)


def test_patterns_sum_to_one_and_match_their_classes(small_scan_lazy):
    ds = small_scan_lazy
    patterns = ds["true_patterns"].values.astype(float)
    np.testing.assert_allclose(patterns.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    cls = ds["true_class"].values
    assert list(cls[:2]) == [-1, -1]
    assert set(cls[2:]) == {0, 1}
    # several precipitates share a phase
    assert np.bincount(cls[2:]).min() >= 2


def test_amorphous_halo_peaks_at_its_ring():
    ds = simulate_scan(scan=(4, 4), detector=(128, 128), precipitates=0)
    halo = ds["true_patterns"].values[1].astype(float)
    cy, cx = ds.attrs["beam_centre_px"]
    dk = float(ds["k_x"][1] - ds["k_x"][0])
    profile = naive.radial_mean(halo, cy, cx)
    ring = np.argmax(profile[5:60]) + 5
    assert ring * dk == pytest.approx(4.0, abs=0.3)
    # a diffuse ring on a background: the peak stands 2-6x above the background inside it
    assert 2 < profile[ring] / profile[int(0.45 * ring)] < 6


def test_same_phase_patterns_are_rotations_of_each_other():
    """Rotating one precipitate's pattern by the stated angle difference gives the other's."""
    ds = simulate_scan(scan=(40, 40), detector=(96, 96), precipitates=8, phases=2, seed=3)
    cy, cx = ds.attrs["beam_centre_px"]
    patterns = ds["true_patterns"].values[2:].astype(float)
    cls = ds["true_class"].values[2:]
    rot = ds["true_rotation"].values[2:]
    yy, xx = np.indices(patterns[0].shape)
    inside = np.hypot(yy - cy, xx - cx) < 40

    def cosine(a, b):
        a, b = a[inside], b[inside]
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    same, other = [], []
    for i in range(len(cls)):
        for j in range(i + 1, len(cls)):
            if cls[i] == cls[j]:
                turned = naive.rotate(patterns[i], cy, cx, rot[j] - rot[i])
                same.append(cosine(turned, patterns[j]))
            else:
                best = max(
                    cosine(naive.rotate(patterns[i], cy, cx, a), patterns[j])
                    for a in range(0, 360, 2)
                )
                other.append(best)
    assert min(same) > 0.9
    assert max(other) < 0.5


def test_maps_are_band_limited_by_the_probe():
    ds = simulate_scan(scan=(64, 64), detector=(16, 16), precipitates=6, seed=5)
    step = ds.attrs["scan_step_nm"]
    cutoff = 1.028 / ds.attrs["probe_fwhm_nm"]
    for m in ds["true_maps"].values[2:]:
        # the probe cuts everything above q_c; a little leaks from the window and the DCT's
        # view of a map that is not mirror-symmetric at the scan edges
        assert naive.dct_power_beyond(m.astype(float), step, 1.1 * cutoff) < 1e-4
    assert (ds["true_maps"].values >= 0).all()


def test_precipitates_have_the_asked_sizes_and_some_overlap():
    ds = simulate_scan(scan=(128, 128), detector=(16, 16), precipitates=12, seed=0)
    radius = ds["true_radius"].values[2:]
    assert (radius >= 0.5).all() and (radius <= 2.5).all()
    cy, cx = ds["true_centre_y"].values[2:], ds["true_centre_x"].values[2:]
    dist = np.hypot(cy[:, None] - cy[None], cx[:, None] - cx[None])
    touching = dist < 0.95 * (radius[:, None] + radius[None])
    np.fill_diagonal(touching, False)
    assert touching.any()
    rot = ds["true_rotation"].values[2:]
    assert ((rot >= 0) & (rot < 360)).all() and np.unique(rot).size == rot.size
    # each precipitate's map peaks at its centre
    maps = ds["true_maps"].values[2:]
    step = ds.attrs["scan_step_nm"]
    for m, y, x in zip(maps, cy, cx, strict=True):
        py, px = np.unravel_index(np.argmax(m), m.shape)
        assert abs((py + 0.5) * step - y) <= step and abs((px + 0.5) * step - x) <= step


def test_bad_parameters_are_refused():
    with pytest.raises(InputError, match="dose"):
        simulate_scan(dose=0, **KW)
    with pytest.raises(InputError, match="NxM"):
        simulate_scan(scan="12by12")
    with pytest.raises(InputError, match="scattered_fraction"):
        simulate_scan(scattered_fraction=1.5, **KW)


def test_generation_memory_is_bounded_by_the_chunk(tmp_path):
    """A 128 MiB scan written in 2 MiB chunks needs a few chunks of memory, not the scan."""
    kw = {"scan": (128, 128), "detector": (64, 64), "precipitates": 4, "chunks": (16, 16)}
    total = 128 * 128 * 64 * 64 * 2
    chunk = 16 * 16 * 64 * 64 * 2
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="synchronous"):
            simulate_scan(tmp_path / "big.zarr", **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * chunk, f"peak {peak / 2**20:.1f} MiB for {chunk / 2**20:.1f} MiB chunks"
    assert peak < total / 4
    assert open_4dstem(tmp_path / "big.zarr")["intensity"].shape == (128, 128, 64, 64)
