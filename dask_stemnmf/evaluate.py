"""Score a decomposition against the ground truth of a simulated scan.

Found components are matched one-to-one to the true sources by the Hungarian algorithm on
the cosine similarity of their diffractions (over the pixels the fit used); each matched pair
is then scored by the cosine of its diffractions and of its maps.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from .errors import InputError

__all__ = ["cosine_matrix", "match_to_truth"]


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute cosine similarity of every row of ``a`` with every row of ``b``.

    Parameters
    ----------
    a, b
        ``(P, L)`` and ``(Q, L)`` vectors.

    Returns
    -------
    numpy.ndarray
        ``(P, Q)`` in ``[0, 1]``; a zero vector scores 0 against everything.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
    return np.abs(a @ b.T) / np.maximum(norms, 1e-300)


def match_to_truth(
    result: xr.Dataset, truth: xr.Dataset, pixels: np.ndarray | None = None
) -> xr.Dataset:
    """Match found components to true sources and score each match.

    Parameters
    ----------
    result
        A decomposition: ``maps (component, scan_y, scan_x)``, ``diffractions (component,
        *signal)`` and, optionally, ``fit_mask (*signal)`` (pixels the fit used; others are
        ignored by the scores).
    truth
        A simulated scan with ``true_maps (source, scan_y, scan_x)`` and
        ``true_patterns (source, *signal)``.
    pixels
        ``(*signal)`` boolean: the pixels the diffractions are compared on (to compare
        several results on the same pixels); default the result's ``fit_mask``, else all.

    Returns
    -------
    xarray.Dataset
        Along ``source``: ``component`` (the matched component, -1 when there are fewer
        components than sources and this source got none), ``diffraction_cosine`` and
        ``map_cosine`` (NaN when unmatched).
    """
    for name, ds, want in (
        ("result", result, ("maps", "diffractions")),
        ("truth", truth, ("true_maps", "true_patterns")),
    ):
        missing = [v for v in want if v not in ds.variables]
        if missing:
            raise InputError(
                f"{name} lacks {', '.join(missing)}; pass a fit result and a simulated scan"
            )
    n_src, k = truth.sizes["source"], result.sizes["component"]
    tp = np.asarray(truth["true_patterns"].values, dtype=np.float64).reshape(n_src, -1)
    fp = np.asarray(result["diffractions"].values, dtype=np.float64).reshape(k, -1)
    if tp.shape[1] != fp.shape[1]:
        raise InputError(
            f"the result's diffractions have {fp.shape[1]} pixels and the truth's {tp.shape[1]}; "
            "score a result against the scan it was fitted to"
        )
    if pixels is None and "fit_mask" in result.variables:
        pixels = result["fit_mask"].values
    if pixels is not None:
        used = np.asarray(pixels, dtype=bool).reshape(-1)
        if used.size != tp.shape[1]:
            raise InputError(f"pixels has {used.size} values for {tp.shape[1]} detector pixels")
        tp, fp = tp[:, used], fp[:, used]
    tm = np.asarray(truth["true_maps"].values, dtype=np.float64).reshape(n_src, -1)
    fm = np.asarray(result["maps"].values, dtype=np.float64).reshape(k, -1)
    cp, cm = cosine_matrix(tp, fp), cosine_matrix(tm, fm)
    rows, cols = linear_sum_assignment(-cp)
    component = np.full(n_src, -1, dtype=np.int64)
    dcos = np.full(n_src, np.nan)
    mcos = np.full(n_src, np.nan)
    component[rows] = cols
    dcos[rows] = cp[rows, cols]
    mcos[rows] = cm[rows, cols]
    coords = {"source": truth["source"].values}
    return xr.Dataset(
        {
            "component": (("source",), component),
            "diffraction_cosine": (("source",), dcos),
            "map_cosine": (("source",), mcos),
        },
        coords=coords,
    )
