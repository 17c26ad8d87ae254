from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import pytest

from dask_stemnmf import (
    ConstrainedNMF,
    InputError,
    decompose,
    match_to_truth,
    pca,
    simulate_scan,
)
from dask_stemnmf._kernels.nmf import hals_sweeps, mu_step, nnls_clip
from dask_stemnmf.errors import ConvergenceWarning, StemNMFWarning
from dask_stemnmf.nmf.stats import c_update, s_statistics, split_statistics

from . import naive

pytestmark = pytest.mark.filterwarnings("ignore::dask_stemnmf.errors.ConvergenceWarning")

SMALL = {"scan": (20, 18), "detector": (16, 16), "precipitates": 4, "phases": 2, "seed": 4}


@pytest.fixture(scope="module")
def scan():
    with dask.config.set(scheduler="synchronous"):
        return simulate_scan(chunks=(20, 18), **SMALL).persist()


def matrix(ds):
    x = ds["intensity"].values.astype(np.float64)
    return x.reshape(x.shape[0] * x.shape[1], -1)


def start(ds, k, seed=0):
    rng = np.random.default_rng(seed)
    ny, nx = ds.sizes["scan_y"], ds.sizes["scan_x"]
    m = ds.sizes["k_y"] * ds.sizes["k_x"]
    mean = float(ds["intensity"].mean())
    return rng.random((ny, nx, k)) * np.sqrt(mean / k), rng.random((m, k)) * np.sqrt(mean / k)


def rechunked(ds, chunks):
    return ds.assign(intensity=ds["intensity"].chunk({"scan_y": chunks[0], "scan_x": chunks[1]}))


# ---- kernels --------------------------------------------------------------------------------


def test_hals_kernel_matches_columnwise_numpy():
    rng = np.random.default_rng(0)
    X = rng.random((50, 30))
    h = rng.random((30, 5))
    w = rng.random((50, 5))
    ref = w.copy()
    p, g = X @ h, h.T @ h
    for _ in range(3):
        for k in range(5):
            ref[:, k] = np.maximum(0, ref[:, k] + (p[:, k] - ref @ g[:, k]) / g[k, k])
    hals_sweeps(w, p, g, max_sweeps=3, rel_tol=0.0)
    np.testing.assert_allclose(w, ref, rtol=1e-12)


def test_hals_kernel_never_increases_the_objective():
    rng = np.random.default_rng(1)
    X, h = rng.random((40, 25)), rng.random((25, 6))
    w = rng.random((40, 6))
    p, g = X @ h, h.T @ h
    previous = np.sum((X - w @ h.T) ** 2)
    for _ in range(5):
        hals_sweeps(w, p, g, max_sweeps=1, rel_tol=0.0)
        now = np.sum((X - w @ h.T) ** 2)
        assert now <= previous + 1e-9
        previous = now
    assert (w >= 0).all()


def test_mu_and_als_kernels():
    rng = np.random.default_rng(2)
    a = rng.random((5, 3))
    w, p, g = rng.random((7, 3)), rng.random((7, 3)), a.T @ a + np.eye(3)  # a Gram matrix
    np.testing.assert_allclose(mu_step(w, p, g), w * p / (w @ g))
    np.testing.assert_allclose(
        nnls_clip(p, g), np.maximum(p @ np.linalg.inv(g), 0), rtol=1e-10, atol=1e-12
    )


# ---- graphs ---------------------------------------------------------------------------------


def test_statistics_equal_numpy_and_build_lazily(scan, raise_if_dask_computes):
    C0, S0 = start(scan, 3)
    data = scan["intensity"].data.rechunk((7, 5, -1, -1))
    C = da.from_array(C0.astype(np.float32), chunks=(7, 5, 3))
    with dask.config.set(scheduler=raise_if_dask_computes):
        C1, _ = c_update(data, C, S0, solver="hals", sweeps=2, inner_tol=0.0)
        stats = s_statistics(data, C1, split_every=3)
    assert raise_if_dask_computes.calls == 0
    with dask.config.set(scheduler="synchronous"):
        c1, st = dask.compute(C1, stats)
    D = matrix(scan)
    w = C0.reshape(-1, 3).copy()
    hals_sweeps(w, D @ S0, S0.T @ S0, max_sweeps=2, rel_tol=0.0)
    np.testing.assert_allclose(c1.reshape(-1, 3), w, rtol=2e-4, atol=1e-3)
    q, h, _ = split_statistics(st, D.shape[1])
    np.testing.assert_allclose(q, D.T @ c1.reshape(-1, 3), rtol=1e-5)
    np.testing.assert_allclose(h, c1.reshape(-1, 3).T.astype(float) @ c1.reshape(-1, 3), rtol=1e-6)


# ---- the estimator --------------------------------------------------------------------------


def near_truth(ds, seed=0):
    """A start near the ground truth, perturbed by 30 %: no component dies on the way."""
    rng = np.random.default_rng(seed)
    maps = np.moveaxis(ds["true_maps"].values.astype(float), 0, -1)
    patterns = ds["true_patterns"].values.reshape(maps.shape[-1], -1).T.astype(float)
    c0 = maps * rng.uniform(0.7, 1.3, maps.shape) + 1
    return c0, patterns * rng.uniform(0.7, 1.3, patterns.shape) + 1e-4


def test_hals_fit_equals_the_in_memory_reference(scan):
    C0, S0 = near_truth(scan)
    model = ConstrainedNMF(
        6,
        init=(C0, S0),
        max_iter=15,
        tol=0,
        map_resolution_nm=None,  # the reference is primitive NMF
        diffraction_continuity=False,
        inner_sweeps=3,
        inner_tol=0.0,
        bright_field_mask=None,  # the reference fits every pixel
    )
    with pytest.warns(ConvergenceWarning):
        r = model.fit(rechunked(scan, (7, 6))).result_
    C, S, losses = naive.hals_nmf(matrix(scan), C0.reshape(-1, 6), S0, 15, 3)
    maps = r["maps"].values.reshape(6, -1).T
    diffr = r["diffractions"].values.reshape(6, -1).T
    np.testing.assert_allclose(r["loss"].values, losses, rtol=1e-4)
    np.testing.assert_allclose(diffr, S, rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(maps @ diffr.T, C @ S.T, rtol=2e-3, atol=1e-2)
    np.testing.assert_allclose(diffr.sum(axis=0), 1.0, rtol=1e-5)


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_same_result_on_three_chunkings(scan, solver):
    results = []
    for chunks in [(20, 18), (7, 5), (9, 18)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            r = decompose(
                rechunked(scan, chunks), 4, solver=solver, init="random", max_iter=25, tol=1e-6,
                diffraction_continuity=False,
            )  # fmt: skip
        results.append(r)
    first = results[0]
    for r in results[1:]:
        np.testing.assert_allclose(r["loss"].values, first["loss"].values, rtol=1e-4)
        for name in ("diffractions", "maps"):
            peak = float(np.abs(first[name].values).max())
            np.testing.assert_allclose(r[name].values, first[name].values, atol=1e-3 * peak)


def test_als_equals_its_in_memory_reference(scan):
    C0, S0 = near_truth(scan)
    with pytest.warns(ConvergenceWarning):
        r = decompose(
            rechunked(scan, (7, 5)),
            6,
            solver="als",
            bright_field_mask=None,
            init=(C0, S0),
            max_iter=3,
            tol=0,
            diffraction_continuity=False,
            map_resolution_nm=None,
        )
    D = matrix(scan)
    S = S0 / S0.sum(axis=0)
    for _ in range(3):
        C = np.maximum(D @ S @ np.linalg.inv(S.T @ S), 0)
        S = np.maximum(D.T @ C @ np.linalg.inv(C.T @ C), 0)
        S = S / S.sum(axis=0)
    diffr = r["diffractions"].values.reshape(6, -1).T
    np.testing.assert_allclose(diffr, S, atol=1e-3 * S.max())


def test_same_result_on_a_cluster_of_processes(scan):
    from distributed import Client, LocalCluster

    kw = {
        "init": "nndsvda",
        "max_iter": 20,
        "map_resolution_nm": "probe",
        "diffraction_continuity": True,
        "continuity_warm_start": 5,
    }
    local = decompose(rechunked(scan, (10, 9)), 4, **kw)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        remote = decompose(rechunked(scan, (10, 9)), 4, **kw)
        remote_maps = remote["maps"].values
    np.testing.assert_allclose(remote["loss"].values, local["loss"].values, rtol=1e-4)
    np.testing.assert_allclose(remote_maps, local["maps"].values, rtol=1e-3, atol=1e-2)


def test_mu_agrees_with_scikit_learn_from_the_same_start(scan):
    sklearn = pytest.importorskip("sklearn.decomposition")
    C0, S0 = start(scan, 3, seed=5)
    D = matrix(scan)
    ref = sklearn.NMF(3, init="custom", solver="mu", beta_loss="frobenius", max_iter=30, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        W = ref.fit_transform(D, W=C0.reshape(-1, 3).copy(), H=S0.T.copy())
    with pytest.warns(ConvergenceWarning):
        r = decompose(
            scan,
            3,
            solver="mu",
            bright_field_mask=None,
            init=(C0, S0),
            max_iter=30,
            tol=0,
            diffraction_continuity=False,
            map_resolution_nm=None,
        )
    ours = r["maps"].values.reshape(3, -1).T @ r["diffractions"].values.reshape(3, -1)
    theirs = W @ ref.components_
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_map_constraint_loss_never_increases_and_maps_are_band_limited(scan):
    r = decompose(
        scan,
        4,
        map_resolution_nm="probe",
        diffraction_continuity=False,
        max_iter=25,
        tol=0,
        init="random",
    )
    loss = r["loss"].values
    assert (np.diff(loss) <= 1e-7 * loss[:-1]).all(), np.diff(loss).max()
    step = scan.attrs["scan_step_nm"]
    cutoff = r.attrs["map_cutoff_inv_nm"]
    for m in r["maps"].values:
        assert (m >= 0).all()
        if m.sum() > 0:
            assert naive.dct_power_beyond(m.astype(float), step, cutoff * (1 + 1e-9)) < 1e-6


def test_hals_loss_never_increases_without_constraints(scan):
    r = decompose(scan, 5, diffraction_continuity=False, max_iter=40, tol=0, init="nndsvda")
    loss = r["loss"].values
    assert (np.diff(loss) <= 1e-7 * loss[:-1]).all()


@pytest.mark.parametrize("dose", [5000.0, 50000.0])
def test_continuity_removes_dips_that_primitive_nmf_leaves(dose):
    """A significant dip: a pixel that a one-pixel closing raises by more than 5 % of the
    pattern's maximum, outside the masked disc. With ``dip_sigma=0`` the constraint leaves
    none at all; with the default noise floor it leaves only valleys within 4 times a
    pixel's counting noise (noise-level valleys are not artefacts, and filling them costs
    fidelity: README)."""
    ds = simulate_scan(
        scan=(40, 40),
        detector=(48, 48),
        precipitates=8,
        phases=2,
        seed=2,
        dose=dose,
        chunks=(20, 20),
    ).persist()
    kw = {"init": "nndsvda", "max_iter": 40, "tol": 1e-5, "bright_field_mask": "auto"}
    primitive = decompose(ds, 8, diffraction_continuity=False, **kw)
    strict = decompose(ds, 8, dip_threshold=0.04, dip_sigma=0.0, **kw)
    default = decompose(ds, 8, **kw)

    def significant_dips(result, sigmas):
        maps = result["maps"].values.reshape(8, -1).astype(float)
        patterns = result["diffractions"].values.reshape(8, -1).astype(float)
        noise = naive.diffraction_noise(maps, patterns)
        used = result["fit_mask"].values.reshape(-1)
        total = 0
        for p, s in zip(patterns, noise, strict=True):
            depth = naive.closing_raise(p.reshape(48, 48), 1).reshape(-1)
            total += int(((depth > 0.05 * p.max()) & (depth > sigmas * s) & used).sum())
        return total

    assert significant_dips(strict, 0) == 0
    assert significant_dips(default, 4.5) == 0
    assert significant_dips(primitive, 0) > 500
    assert significant_dips(primitive, 4.5) > 100
    # the price in fit: small with the noise floor; filling every valley costs more
    base = primitive["loss"].values[-1]
    assert default["loss"].values[-1] < 1.02 * base
    assert strict["loss"].values[-1] < 1.08 * base


def test_a_negative_seed_is_refused(scan):
    with pytest.raises(InputError, match="random_state"):
        decompose(scan, 2, random_state=-1)


def test_bad_requests_are_refused(scan):
    with pytest.raises(InputError, match="positive integer"):
        decompose(scan, 0)
    with pytest.raises(InputError, match="exceeds"):
        decompose(scan, 10_000)
    with pytest.raises(InputError, match="solver"):
        decompose(scan, 2, solver="newton")
    bad = scan.assign(intensity=scan["intensity"].astype("float32").where(scan["intensity"] < 40))
    with pytest.raises(InputError, match="NaN"):
        decompose(bad, 2)
    neg = scan.assign(intensity=scan["intensity"].astype("float32") - 1)
    with pytest.raises(InputError, match="negative='clip'"):
        decompose(neg, 2, negative="refuse")
    with pytest.raises(InputError, match="map_resolution_nm"):
        decompose(scan, 2, map_resolution_nm="sharp")
    for step in (0, 1.5, True):
        with pytest.raises(InputError, match="foreign_fill_step"):
            decompose(scan, 2, foreign_fill_step=step)
    # clipped by default, with a note giving their count and minimum
    n_neg = int((neg["intensity"].values < 0).sum())
    with pytest.warns(StemNMFWarning, match=f"{n_neg} negative values \\(min -1"):
        r = decompose(neg, 2, max_iter=3, tol=1)
    assert np.isfinite(r["maps"].values).all()
    assert any("negative values" in note for note in r.attrs["notes"])


def test_more_components_than_the_rank_gives_no_nan():
    rng = np.random.default_rng(0)
    base = simulate_scan(scan=(10, 10), detector=(8, 8), precipitates=0, noise=False)
    rank2 = np.einsum("syx,sab->yxab", base["true_maps"].values, base["true_patterns"].values)
    ds = base.assign(intensity=(base["intensity"].dims, rank2.astype("float32")))
    ds["intensity"][0, 0] = 0  # an all-zero position too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = decompose(ds, 6, max_iter=30, init="random", random_state=int(rng.integers(100)))
    assert np.isfinite(r["maps"].values).all() and np.isfinite(r["diffractions"].values).all()
    np.testing.assert_allclose(r["diffractions"].values.reshape(6, -1).sum(axis=1), 1.0, rtol=1e-5)


def test_pca_matches_numpy_svd(scan):
    r = pca(scan, 3)
    D = matrix(scan)
    X = D - D.mean(axis=0)
    s = np.linalg.svd(X, compute_uv=False)
    np.testing.assert_allclose(
        r["explained_variance"].values, s[:3] ** 2 / (D.shape[0] - 1), rtol=1e-3
    )
    assert (r["diffractions"].values.reshape(3, -1).sum(axis=1) > 0).all()
    recon = r["maps"].values.reshape(3, -1).T @ r["diffractions"].values.reshape(3, -1)
    u, s_, vt = np.linalg.svd(X, full_matrices=False)
    np.testing.assert_allclose(recon, (u[:, :3] * s_[:3]) @ vt[:3], atol=1e-2 * np.abs(X).max())


def test_spectrum_images_decompose_with_both_constraints():
    """(scan_y, scan_x, energy): maps band-limited, spectra continuous along energy."""
    rng = np.random.default_rng(3)
    ny, nx, ne = 24, 20, 200
    energy = 400 + 0.5 * np.arange(ne)
    peaks = np.stack(
        [
            np.exp(-0.5 * ((energy - 455) / 3) ** 2) + 0.2 * np.exp(-(energy - 400) / 40),
            np.exp(-0.5 * ((energy - 480) / 4) ** 2) + 0.2 * np.exp(-(energy - 400) / 40),
        ]
    )
    yy, xx = np.mgrid[:ny, :nx]
    maps = np.stack(
        [
            200 * np.exp(-(((yy - 8) ** 2 + (xx - 6) ** 2) / 30)) + 20,
            200 * np.exp(-(((yy - 15) ** 2 + (xx - 13) ** 2) / 40)) + 20,
        ]
    )
    counts = rng.poisson(np.einsum("kyx,ke->yxe", maps, peaks)).astype("uint16")
    ds = (
        __import__("xarray")
        .Dataset(
            {"intensity": (("scan_y", "scan_x", "energy"), counts)},
            coords={
                "scan_y": ("scan_y", np.arange(ny) * 2.0, {"units": "nm"}),
                "scan_x": ("scan_x", np.arange(nx) * 2.0, {"units": "nm"}),
                "energy": ("energy", energy, {"units": "eV"}),
            },
            attrs={
                "beam_energy_kev": 200.0,
                "convergence_semiangle_mrad": 20.0,
                "scan_step_nm": 2.0,
            },
        )
        .chunk({"scan_y": 7, "scan_x": 20})
    )
    r = decompose(
        ds,
        2,
        map_resolution_nm=6.0,
        diffraction_continuity=True,
        continuity_radius_px=2,
        max_iter=100,
        tol=1e-6,
    )
    assert r["diffractions"].dims == ("component", "energy")
    assert np.isfinite(r["maps"].values).all()
    truth = peaks / peaks.sum(axis=1, keepdims=True)
    found = r["diffractions"].values.astype(float)
    cos = found @ truth.T / np.outer(np.linalg.norm(found, axis=1), np.linalg.norm(truth, axis=1))
    assert max(cos[0, 0] * cos[1, 1], cos[0, 1] * cos[1, 0]) > 0.97**2
    for m in r["maps"].values:
        assert (
            naive.dct_power_beyond(m.astype(float), 2.0, r.attrs["map_cutoff_inv_nm"] * (1 + 1e-9))
            < 1e-6
        )


def test_noise_normalisation_fits_the_weighted_data_and_leaves_the_input_alone(scan):
    before = scan["intensity"].values.copy()
    r = decompose(
        scan,
        4,
        noise_normalisation=True,
        bright_field_mask=None,
        diffraction_continuity=False,
        max_iter=30,
        tol=0,
        init="random",
        persist=True,
    )
    np.testing.assert_array_equal(scan["intensity"].values, before)
    D = matrix(scan)
    a = D.mean(axis=1, keepdims=True)
    b = D.mean(axis=0, keepdims=True)
    weight = np.where(a > 0, 1 / np.sqrt(np.where(a > 0, a, 1) * b), 0)
    rec = r["maps"].values.reshape(4, -1).T.astype(float) @ r["diffractions"].values.reshape(4, -1)
    weighted = np.sum(((D - rec) * weight) ** 2) / np.sum((D * weight) ** 2)
    assert r["loss"].values[-1] == pytest.approx(weighted, rel=1e-3)
    assert (np.diff(r["loss"].values) <= 1e-7 * r["loss"].values[:-1]).all()
    np.testing.assert_allclose(r["diffractions"].values.reshape(4, -1).sum(axis=1), 1.0, rtol=1e-5)


def weighted_loss(ds, r):
    D = matrix(ds)
    k = r.sizes["component"]
    a = D.mean(axis=1, keepdims=True)
    b = D.mean(axis=0, keepdims=True)
    weight = np.where(a > 0, 1 / np.sqrt(np.where(a > 0, a, 1) * b), 0)
    rec = r["maps"].values.reshape(k, -1).T.astype(float) @ r["diffractions"].values.reshape(k, -1)
    return np.sum(((D - rec) * weight) ** 2) / np.sum((D * weight) ** 2)


def test_noise_normalisation_with_the_map_constraint_band_limits_the_physical_maps(scan):
    """The weighted fit keeps the physical maps (not the normalised ones) band-limited, and its
    majorise-minimise map steps never raise the weighted loss."""
    ds = scan.assign(intensity=scan["intensity"].chunk({"scan_y": 7, "scan_x": 9}))
    r = decompose(
        ds, 4, noise_normalisation=True, map_resolution_nm="probe", bright_field_mask=None,
        diffraction_continuity=False, max_iter=20, tol=0, init="random",
    )  # fmt: skip
    loss = r["loss"].values
    assert (np.diff(loss[1:]) <= 1e-7 * loss[1:-1]).all(), np.diff(loss[1:]).max()
    assert loss[-1] == pytest.approx(weighted_loss(scan, r), rel=1e-3)
    step, cutoff = scan.attrs["scan_step_nm"], r.attrs["map_cutoff_inv_nm"]
    for m in r["maps"].values.astype(float):
        assert m.min() >= -1e-6 * m.max()
        assert naive.dct_power_beyond(m, step, cutoff * (1 + 1e-9)) < 1e-6
    plain = decompose(
        ds, 4, noise_normalisation=True, bright_field_mask=None, diffraction_continuity=False,
        max_iter=20, tol=0, init="random", map_resolution_nm=None,
    )  # fmt: skip
    beyond = [naive.dct_power_beyond(m.astype(float), step, cutoff) for m in plain["maps"].values]
    assert max(beyond) > 1e-3  # without the constraint the same fit is not band-limited


def test_kl_mu_agrees_with_scikit_learn_from_the_same_start(scan):
    sklearn = pytest.importorskip("sklearn.decomposition")
    C0, S0 = start(scan, 3, seed=6)
    D = matrix(scan)
    ref = sklearn.NMF(
        3, init="custom", solver="mu", beta_loss="kullback-leibler", max_iter=25, tol=0.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        W = ref.fit_transform(D, W=C0.reshape(-1, 3).copy(), H=S0.T.copy())
    r = decompose(
        scan,
        3,
        solver="mu",
        bright_field_mask=None,
        loss="kl",
        init=(C0, S0),
        max_iter=25,
        tol=0,
        diffraction_continuity=False,
        map_resolution_nm=None,
    )
    ours = r["maps"].values.reshape(3, -1).T.astype(float) @ r["diffractions"].values.reshape(3, -1)
    theirs = W @ ref.components_
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
    # the reported loss is the generalised KL divergence per count, and it decreases
    loss = r["loss"].values
    assert (np.diff(loss) <= 1e-9).all()
    with pytest.raises(InputError, match="loss='kl'"):
        decompose(scan, 3, solver="hals", loss="kl")


def test_bad_values_under_the_detector_mask_are_allowed(scan):
    x = scan["intensity"].values.astype("float32")
    x[:, :, 3, 4] = np.nan  # a dead pixel
    x[2, 2, 5, 5] = np.inf
    mask = np.ones(x.shape[2:], bool)
    mask[3, 4] = False
    bad = scan.assign(intensity=(scan["intensity"].dims, x))
    with pytest.raises(InputError, match="outside detector_mask"):
        decompose(bad.assign(detector_mask=(("k_y", "k_x"), mask)), 3, max_iter=3)
    mask[5, 5] = False
    r = decompose(bad.assign(detector_mask=(("k_y", "k_x"), mask)), 3, max_iter=5, tol=1)
    assert np.isfinite(r["maps"].values).all()
    assert not r["fit_mask"].values[3, 4] and not r["fit_mask"].values[5, 5]
    assert r["diffractions"].values[:, 3, 4].max() == 0


def recovery(seed):
    """Per-precipitate ``(diffraction, map)`` cosines of constrained NMF, primitive NMF, PCA."""
    ds = simulate_scan(
        scan=(48, 48), detector=(48, 48), precipitates=6, phases=2, seed=seed, chunks=(24, 48)
    ).persist()
    k = ds.sizes["source"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        constrained = decompose(ds, k)  # the defaults, as a user calls it
        primitive = decompose(
            ds, k, map_resolution_nm=None, diffraction_continuity=False, merge_threshold=None,
            separate_halo=False,
        )
    used = constrained["fit_mask"].values
    out = {}
    for name, result in [("c", constrained), ("p", primitive), ("pca", pca(ds, k))]:
        m = match_to_truth(result, ds, pixels=used).isel(source=slice(2, None))
        out[name] = np.stack([m["diffraction_cosine"].values, m["map_cosine"].values])
    out["radius"] = ds["true_radius"].values[2:]
    return out


def check_recovery(seeds):
    """Constrained NMF recovers the precipitates at least as well as primitive NMF (to 0.05
    cosine on at least 80 % of them, better on average: the rest are local minima that go
    either way) and far better than PCA (better on at least 80 % of those about 2 nm across
    or more, by 0.3 on average); at least 3 in 4 of those 2.5 nm and more across are found."""
    runs = [recovery(seed) for seed in seeds]
    c = np.concatenate([r["c"] for r in runs], axis=1)
    p = np.concatenate([r["p"] for r in runs], axis=1)
    by_pca = np.concatenate([r["pca"] for r in runs], axis=1)
    radius = np.concatenate([r["radius"] for r in runs])
    for row, name in enumerate(("diffraction", "map")):
        assert np.mean(c[row] >= p[row] - 0.05) >= 0.8, (name, c[row], p[row])
        assert c[row].mean() > p[row].mean() + (0.01 if row == 0 else 0.05), name
        visible = radius >= 0.95
        assert (by_pca[row][visible] < c[row][visible]).mean() >= 0.8, name
        assert c[row][visible].mean() > by_pca[row][visible].mean() + 0.3, name
    large = radius >= 1.25
    found = (c[0][large] > 0.85) & (c[1][large] > 0.8)
    assert found.mean() >= 0.75, (c[:, large], radius[large])


def test_ground_truth_recovery_constrained_primitive_and_pca():
    check_recovery([1, 2, 3])


@pytest.mark.slow
def test_ground_truth_recovery_on_eight_scans():
    check_recovery(range(1, 9))


@pytest.mark.parametrize("constraints", [False, True])
def test_a_run_resumed_from_a_checkpoint_ends_as_the_uninterrupted_run(scan, constraints):
    kw = {"max_iter": 25, "tol": 0, "init": "random", "checkpoint_every": 10}
    if constraints:
        kw.update(map_resolution_nm="probe", diffraction_continuity=True, continuity_warm_start=5)
    else:
        kw.update(map_resolution_nm=None, diffraction_continuity=False)
    states = []
    whole = ConstrainedNMF(4, checkpoint=states.append, **kw).fit(scan).result_
    assert [s["iteration"] for s in states] == [10, 20]
    state = dict(states[0], C=states[0]["C"].compute())
    resumed = ConstrainedNMF(4, **kw).fit(scan, resume=state).result_
    np.testing.assert_array_equal(resumed["loss"].values, whole["loss"].values)
    np.testing.assert_array_equal(resumed["maps"].values, whole["maps"].values)
    np.testing.assert_array_equal(resumed["diffractions"].values, whole["diffractions"].values)
    with pytest.raises(InputError, match="checkpoint does not fit"):
        ConstrainedNMF(5, **kw).fit(scan, resume=state)


def test_spare_components_whose_maps_die_give_no_nan():
    """Two components more than the sources under both constraints: maps of the spares
    die within an iteration; their diffractions once divided by ~1e-40 and the maps
    overflowed into NaN. They now restart and every value stays finite."""
    ds = simulate_scan(
        seed=1, scan=(48, 48), detector=(48, 48), precipitates=8, phases=3, dose=20000.0,
        disc_edge_px=1.0, psf_sigma_px=1.0, psf_tail=0.05, probe_fwhm_nm=0.87,
        scan_step_nm=0.3, precipitate_diameter_nm=(1.5, 5.0), chunks=(24, 48),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        r = decompose(ds, ds.sizes["source"] + 2, max_iter=15)
    assert np.isfinite(r["maps"].values).all() and np.isfinite(r["diffractions"].values).all()
    assert np.isfinite(r["loss"].values).all()
