"""Separating the amorphous halo's share from crystalline components (dask_stemnmf.purity)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from dask_stemnmf import simulate_scan
from dask_stemnmf.purity import halo_shares, separate_halo


def cosine(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def truth():
    return simulate_scan(
        scan=(24, 24), detector=(48, 48), precipitates=3, phases=2, seed=2, noise=False
    ).compute()


def mixed(truth, share, lazy):
    """The true factors with ``share`` of the halo's pattern in every precipitate's: a
    factorisation exactly as good as the truth (the halo's map gives that share back)."""
    maps = truth["true_maps"].values.astype(np.float64)
    patterns = truth["true_patterns"].values.astype(np.float64)
    patterns = patterns / patterns.sum(axis=(1, 2), keepdims=True)
    crystal = np.flatnonzero(truth["true_class"].values >= 0)
    halo = int(np.flatnonzero(truth["true_class"].values < 0)[1])
    m, p = maps.copy(), patterns.copy()
    for i in crystal:
        p[i] = (patterns[i] + share * patterns[halo]) / (1 + share)
        m[i] = maps[i] * (1 + share)
        m[halo] -= share * maps[i]
    assert m.min() >= 0  # the halo's map is larger than the share under every precipitate
    result = xr.Dataset(
        {
            "maps": (("component", "scan_y", "scan_x"),
                     da.from_array(m.astype(np.float32), chunks=(2, 12, 24)) if lazy else m),
            "diffractions": (("component", "k_y", "k_x"), p),
            "diffraction_sigma": (("component", "k_y", "k_x"), 1e-4 * p.max() * np.ones_like(p)),
            "fit_mask": (("k_y", "k_x"), np.ones(p.shape[1:], dtype=bool)),
        }
    )  # fmt: skip
    return result, crystal, halo, maps, patterns


@pytest.mark.parametrize("lazy", [False, True])
def test_the_halo_share_leaves_the_crystalline_components_and_the_product_holds(truth, lazy):
    result, crystal, halo, maps, patterns = mixed(truth, 0.6, lazy)
    before = [cosine(result["diffractions"].values[i], patterns[i]) for i in crystal]
    got = separate_halo(result)
    assert isinstance(got["maps"].data, da.Array) == lazy  # lazy maps stay lazy
    after = [cosine(got["diffractions"].values[i], patterns[i]) for i in crystal]
    assert max(before) < 0.98 and min(after) > 0.999
    np.testing.assert_allclose(got["diffractions"].values.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    # the halo's map takes the share back: the true halo map again
    assert cosine(got["maps"].values[halo], maps[halo]) > 0.999
    for i in crystal:
        assert cosine(got["maps"].values[i], maps[i]) > 0.9999
    # C S^T: only the clipped pixels change it, and they are few
    model = np.tensordot(result["maps"].values, result["diffractions"].values, axes=(0, 0))
    new = np.tensordot(got["maps"].values, got["diffractions"].values, axes=(0, 0))
    assert np.abs(new - model).sum() / model.sum() < 0.02
    info = got.attrs["halo_separation"]
    assert 0 <= info["clipped_share"] < 0.02 and info["left_mixed"] == []
    shares = {(i, j): s for i, j, s in info["shares"]}
    for i in crystal:
        # the share of the unit-sum mixed pattern: 0.6 / 1.6 (a low quantile takes a bit less)
        assert shares[(int(i), halo)] == pytest.approx(0.6 / 1.6, abs=0.05)
    # the noise of a crystalline diffraction is what it was, in the new scale
    sigma, kept = result["diffraction_sigma"].values, got["diffraction_sigma"].values
    for i in crystal:
        scale = float(got["maps"].values[i].sum() / np.asarray(result["maps"].values[i]).sum())
        np.testing.assert_allclose(kept[i] * scale, sigma[i], rtol=1e-5)
    # the input is left as it was
    np.testing.assert_array_equal(result["diffractions"].values, mixed(truth, 0.6, False)[0][
        "diffractions"].values)


def test_pure_components_are_left_alone(truth):
    result, crystal, _, _, patterns = mixed(truth, 0.0, False)
    got = separate_halo(result)
    for i in crystal:
        assert cosine(got["diffractions"].values[i], patterns[i]) > 0.9999
    assert got.attrs["halo_separation"]["clipped_share"] < 1e-3


def test_halo_shares_by_hand():
    # a flat halo and a spot pattern holding 0.3 of it; the minimum ratio takes exactly 0.3
    valid = np.ones((8, 8), dtype=bool)
    halo = np.ones((8, 8))
    spot = np.zeros((8, 8))
    spot[3, 4] = 5.0
    patterns = np.stack([halo, spot + 0.3 * halo])
    out, shares = halo_shares(patterns, np.array([1]), np.array([0]), valid,
                              quantile=0.0, smooth_px=0.0)  # fmt: skip
    assert shares[0, 1] == pytest.approx(0.3)
    np.testing.assert_allclose(out[1], spot, atol=1e-12)
    np.testing.assert_array_equal(out[0], halo)
    # ``keep`` bounds the share: at least 90 % of the component's sum stays
    _, bounded = halo_shares(patterns, np.array([1]), np.array([0]), valid,
                             quantile=0.0, smooth_px=0.0, keep=0.9)  # fmt: skip
    assert bounded[0, 1] == pytest.approx(0.1 * patterns[1].sum() / 64)


def test_the_fit_separates_the_halo_by_default_and_its_patterns_hold_more_of_their_own():
    import warnings

    import dask

    from dask_stemnmf import ConstrainedNMF, pattern_mixture

    scan = simulate_scan(
        scan=(32, 32), detector=(40, 40), precipitates=4, phases=2, seed=3, dose=4000.0,
        psf_sigma_px=1.0, psf_tail=0.05, disc_edge_px=1.0,
    )  # fmt: skip
    k = scan.sizes["source"]
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixed_fit = ConstrainedNMF(k, separate_halo=False, max_iter=60).fit(scan).result_
        default = ConstrainedNMF(k, max_iter=60).fit(scan).result_
    assert "halo_separation" not in mixed_fit.attrs
    assert default.attrs["separate_halo"] and default.attrs["halo_separation"]["shares"]
    crystal = np.flatnonzero(scan["true_class"].values >= 0)
    own = [float(pattern_mixture(r, scan)["own_share"].values[crystal].mean())
           for r in (mixed_fit, default)]  # fmt: skip
    assert own[1] > own[0] + 0.05
    # the same fit up to the separation, which comes before the last fill and map update:
    # the same loss history but its last value, which the separation's clipping raises a bit
    np.testing.assert_allclose(default["loss"].values[:-1], mixed_fit["loss"].values[:-1])
    last = default["loss"].values[-1], mixed_fit["loss"].values[-1]
    assert last[1] <= last[0] < last[1] * 1.01
    info = default.attrs["halo_separation"]
    assert 0 < info["clipped_share"] < 0.05 and info["left_mixed"] == []


def test_a_failed_separation_keeps_the_fit_with_a_note(monkeypatch):
    import warnings

    from dask_stemnmf import ConstrainedNMF, InputError, StemNMFWarning
    from dask_stemnmf.nmf import model

    def refuse(result, weight):
        raise InputError("the polar grid is empty")

    monkeypatch.setattr(model, "plan_separation", refuse)
    scan = simulate_scan(scan=(16, 16), detector=(24, 24), precipitates=2, phases=1, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ConstrainedNMF(4, max_iter=12).fit(scan).result_
    assert "halo_separation" not in result.attrs
    assert any("not separated" in n and "polar grid is empty" in n for n in result.attrs["notes"])
    assert any(issubclass(w.category, StemNMFWarning) and "not separated" in str(w.message)
               for w in caught)  # fmt: skip
    assert np.isfinite(np.asarray(result["maps"].values)).all()


@pytest.mark.parametrize("continuity", [True, False])
def test_the_fits_last_loss_is_that_of_the_separated_factors(continuity):
    import warnings

    from dask_stemnmf import ConstrainedNMF

    scan = simulate_scan(
        scan=(24, 24), detector=(32, 32), precipitates=3, phases=1, seed=5, dose=4000.0,
    ).persist()
    k = scan.sizes["source"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ConstrainedNMF(k, max_iter=25, diffraction_continuity=continuity).fit(scan)
        result = result.result_
    assert result.attrs["halo_separation"]["shares"]  # there was something to separate
    used = result["fit_mask"].values.reshape(-1)
    d = np.asarray(scan["intensity"].values, dtype=np.float64).reshape(24 * 24, -1)[:, used]
    c = np.asarray(result["maps"].values, dtype=np.float64).reshape(k, -1)
    s = np.asarray(result["diffractions"].values, dtype=np.float64).reshape(k, -1)[:, used]
    exact = float(((d - c.T @ s) ** 2).sum() / (d**2).sum())
    assert result["loss"].values[-1] == pytest.approx(exact, rel=1e-4)
