"""The stopping rule against losses of known shape."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dask_stemnmf import ConstrainedNMF
from dask_stemnmf.errors import ConvergenceWarning
from dask_stemnmf.nmf.stopping import DRIFT_TOL, diffraction_drift, no_progress


def test_a_steady_decrease_above_tol_goes_on() -> None:
    losses = 0.5 * (1 - 1e-4) ** np.arange(20)  # 1e-4 per iteration, smooth
    assert not no_progress(losses, tol=1e-6)
    assert no_progress(losses, tol=1e-3)


def test_a_plateau_with_chatter_stops() -> None:
    rng = np.random.default_rng(0)
    losses = 0.5137 + 3e-4 * rng.standard_normal(20)  # the fill's scatter, no trend
    assert no_progress(losses, tol=1e-6)
    # the old rule (two losses a window apart agreeing to tol) almost never fires here
    assert abs(losses[-11] - losses[-1]) / (10 * losses[-1]) > 1e-6


def test_a_period_two_oscillation_stops() -> None:
    losses = 0.5 + 5e-4 * (-1.0) ** np.arange(20)
    assert no_progress(losses, tol=1e-6)


def test_a_trend_beneath_the_scatter_goes_on() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(20)
    losses = 0.52 - 2e-4 * t + 1e-4 * rng.standard_normal(20)  # slope 20 standard errors
    assert not no_progress(losses, tol=1e-6)


def test_a_rising_loss_stops() -> None:
    assert no_progress(0.5 + 1e-5 * np.arange(11), tol=1e-6)


def test_too_few_losses_are_refused() -> None:
    with pytest.raises(ValueError, match="three"):
        no_progress([0.5, 0.4], tol=1e-6)


def test_drift_is_one_minus_the_worst_cosine() -> None:
    rng = np.random.default_rng(2)
    a = rng.random((50, 3))
    b = a * np.array([2.0, 0.5, 1.0])  # scale alone is no drift
    assert diffraction_drift(a, b) == pytest.approx(0.0, abs=1e-12)
    b[:, 2] = rng.random(50)
    want = 1 - a[:, 2] @ b[:, 2] / np.linalg.norm(a[:, 2]) / np.linalg.norm(b[:, 2])
    assert diffraction_drift(a, b) == pytest.approx(want, rel=1e-12)


def test_drift_leaves_dead_components_out() -> None:
    a = np.ones((4, 2))
    b = a.copy()
    b[:, 1] = 0.0  # reseeded or dead
    assert diffraction_drift(a, b) == 0.0
    assert diffraction_drift(np.zeros((4, 2)), np.zeros((4, 2))) == 0.0


#: Room for the default to stop on the small scan: its slowest diffraction drifts by 0.004
#: per window at iteration 70 and by 1e-3 at 90 (measured with the spot fill's full step,
#: which these tests use: its chatter puts the loss on a plateau the loss test sees early;
#: with the quarter step the loss falls smoothly by 1e-5-2e-6 per iteration up to 160
#: and the loss test alone does not end the fit there)
MAX_ITER = 160


def _iterations(scan, drift_tol: float, monkeypatch) -> tuple[int, bool]:
    import dask_stemnmf.nmf.model as model

    monkeypatch.setattr(model, "DRIFT_TOL", drift_tol)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ConstrainedNMF(
            7, max_iter=MAX_ITER, merge_threshold=None, foreign_fill_step=1.0
        ).fit(scan).result_
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return int(result.attrs["n_iter"]), bool(result.attrs["converged"]) and not warned


def test_a_fit_stops_only_once_its_diffractions_have_stopped_moving(small_scan_lazy, monkeypatch):
    """The drift test gates the stop: never met, the fit runs to max_iter; always met, the
    loss's test alone ends it (early, on the fill's plateau); the default lies between."""
    loss_only, stopped = _iterations(small_scan_lazy, np.inf, monkeypatch)
    assert stopped and loss_only < MAX_ITER
    never, stopped = _iterations(small_scan_lazy, -1.0, monkeypatch)
    assert not stopped and never == MAX_ITER + 1  # every iteration's loss and the final fill's
    default, _ = _iterations(small_scan_lazy, DRIFT_TOL, monkeypatch)
    assert loss_only < default < never  # measured: 23, 128, 161
