"""The stopping rule: no progress of the loss, no movement of the diffractions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DRIFT_TOL", "diffraction_drift", "no_progress"]

#: Largest change of any diffraction between two drift checks (every stopping window: one
#: minus the cosine of the component with itself at the previous check) at which a fit may
#: stop. On the loss's plateau the components still move: on one 1,500 e/pattern scan of the
#: README's grid the drift was 0.015 per 10 iterations at iteration 30 and 1e-3 at 90, while
#: the halo copies became alike (cosine 0.70 -> 0.95, so they merge) and the pattern cosine
#: rose 0.827 -> 0.850, the loss within its 0.1 % scatter all along. 2e-3 against 1e-3 was
#: measured with merges gated by the drift too (a variant, README "Stopping"): mean map
#: cosine 0.889 against 0.888 on the 8 seed-1 scans of the main grid, more fits converged in
#: time to merge (7 against 3).
DRIFT_TOL = 2e-3


def no_progress(losses: Sequence[float], tol: float, z: float = 2.0) -> bool:
    """Return True when the losses show no significant decrease.

    A straight line is fitted to ``losses`` (the relative losses of the last iterations,
    oldest first, at least three). The fit has stopped progressing when its decrease per
    iteration, relative to the last loss, is below ``tol``, or when the decrease is not
    significant: within ``z`` standard errors of the slope. The second test is what ends a
    fit whose constraint makes the loss chatter (the continuity fill raises a few hundred
    diffraction pixels each iteration and the next update lowers them again: a plateau with
    scatter of about 0.1 % on which no two losses agree to ``tol``); on a smoothly falling
    loss the standard error is tiny and the first test decides alone.

    Parameters
    ----------
    losses
        ``(n,)`` relative losses (residual over the data's squared norm), ``n >= 3``.
    tol
        Least relative decrease per iteration that counts as progress.
    z
        Standard errors of the slope a decrease must exceed to count.

    Returns
    -------
    bool
        Whether the fit may stop.
    """
    y = np.asarray(losses, dtype=np.float64)
    if y.size < 3:
        raise ValueError("the stopping rule needs at least three losses")
    t = np.arange(y.size, dtype=np.float64) - (y.size - 1) / 2.0
    tt = float(t @ t)
    slope = float(t @ (y - y.mean())) / tt
    residual = y - y.mean() - slope * t
    stderr = float(np.sqrt(max(float(residual @ residual), 0.0) / (y.size - 2) / tt))
    decrease = -slope
    return decrease <= tol * max(abs(float(y[-1])), 1e-300) or decrease <= z * stderr


def diffraction_drift(before: np.ndarray, after: np.ndarray) -> float:
    """Largest change of any component's diffraction: ``max_k 1 - cos(before_k, after_k)``.

    Parameters
    ----------
    before, after
        ``(M, K)`` diffractions (columns) of the same components at two iterations, any
        scale; a column that is zero in either is left out.

    Returns
    -------
    float
        The largest ``1 - cosine`` (0 when every column is unchanged in direction).
    """
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    norms = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    live = norms > 0
    if not live.any():
        return 0.0
    cos = np.sum(a[:, live] * b[:, live], axis=0) / norms[live]
    return float(np.max(1.0 - cos))
