"""Rotation-invariant similarity of diffraction patterns (``DESIGN.md`` section 5).

Each pattern is resampled on a polar grid about the direct beam, normalised (zero mean, unit
norm over ``(r, theta)``), and compared with every other by the maximum over azimuthal shifts
of the cross-correlation; the maximising shift is the rotation from one to the other. The
``P x P`` matrix is tiled: square blocks of the upper triangle are computed by separate tasks
and the lower triangle mirrors them, so memory per task is bounded by the block size.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ._kernels.masks import find_bright_field_disc, pattern_centres
from ._kernels.polar import azimuthal_correlation_max, normalise_polar, polar_grid, polar_transform
from .errors import InputError, StemNMFWarning

__all__ = [
    "MIN_RADIUS_PX", "default_r_range", "polar_patterns", "polar_spectra", "rotational_similarity",
]  # fmt: skip

Scaling = Literal["none", "sqrt", "log"]


def _as_stack(patterns: Any) -> da.Array | np.ndarray:
    """Return the patterns as a ``(P, k_y, k_x)`` numpy or dask array (not read)."""
    values = patterns.data if isinstance(patterns, xr.DataArray) else patterns
    stack = values if isinstance(values, da.Array) else np.asarray(values, dtype=np.float64)
    if stack.ndim != 3 or min(stack.shape) < 1:
        raise InputError(
            f"patterns must be a (P, k_y, k_x) stack, got shape {stack.shape}; "
            "pass result.diffractions or an array of 2-D patterns"
        )
    return stack


def _check_finite(block: np.ndarray) -> np.ndarray:
    x = np.asarray(block, dtype=np.float64)
    if not np.isfinite(x).all():
        raise InputError("patterns hold NaN or Inf values; replace or mask them first")
    return x


def _mean_centre(stack: da.Array | np.ndarray) -> np.ndarray:
    """Direct beam of the mean pattern (reads a lazy stack once)."""
    mean = np.maximum(stack, 0).mean(axis=0)
    mean = np.asarray(mean.compute() if isinstance(mean, da.Array) else mean)
    if not np.isfinite(mean).all():
        raise InputError("patterns hold NaN or Inf values; replace or mask them first")
    if not mean.max() > 0:
        raise InputError("the patterns are all zero: pass centre=(y, x) explicitly")
    cy, cx, _ = find_bright_field_disc(mean)
    return np.array([[cy, cx]])


def _centre_arg(stack: da.Array | np.ndarray, centre: Any) -> tuple[np.ndarray, bool]:
    """``(centres, each)``: a ``(1 or P, 2)`` array, and whether each pattern finds its own."""
    if isinstance(centre, str) and centre in ("auto", "each"):
        return _mean_centre(stack), centre == "each"
    arr = np.asarray(centre, dtype=np.float64)
    if arr.shape not in ((2,), (stack.shape[0], 2)):
        raise InputError(f"centre must be 'auto', 'each', (y, x) or (P, 2); got shape {arr.shape}")
    return arr.reshape(-1, 2), False


#: The smallest radius range (pixels) over which rotation can be judged: a circle of radius
#: 2 px crosses about a dozen pixels, one of 1 px only four.
MIN_RADIUS_PX = 2.0


def default_r_range(
    shape: tuple[int, int], centre: tuple[float, float], central_mask_px: float | None = None
) -> tuple[float, float]:
    """Return the default polar radius range: central mask to the nearest detector edge.

    The outer radius is the largest circle about ``centre`` that lies inside the detector
    (beyond it a circle samples zeros outside the detector, which would read as angular
    structure). The inner radius is ``central_mask_px`` (the direct beam left out) when
    that leaves at least :data:`MIN_RADIUS_PX` of radius; when the bright-field disc covers
    most of the detector (or the beam sits near an edge) the mask is dropped, with a note,
    and the range starts at the centre.

    Parameters
    ----------
    shape
        ``(k_y, k_x)`` detector size in pixels.
    centre
        ``(y, x)`` the direct beam, pixels.
    central_mask_px
        Radius of the central-beam mask (``None`` or 0: none).

    Returns
    -------
    tuple of float
        ``(r_min, r_max)`` in pixels.

    Raises
    ------
    InputError
        When even the whole circle inside the detector is under :data:`MIN_RADIUS_PX` (tiny
        detectors such as 4 x 5 pixels, or a centre at the edge): rotation cannot be judged.
    """
    ny, nx = shape
    cy, cx = (float(v) for v in centre)
    r_max = float(min(cy, cx, ny - 1 - cy, nx - 1 - cx))
    if not r_max >= MIN_RADIUS_PX:
        reach = f"{max(r_max, 0.0):.1f}" if np.isfinite(r_max) else "no"
        raise InputError(
            f"patterns of {ny} x {nx} pixels are too small to judge rotation: {reach} px of "
            f"radius about the centre ({cy:.1f}, {cx:.1f}), at least {MIN_RADIUS_PX:g} needed "
            "(pass centre=(y, x) or r_range=(r_min, r_max) if the centre is elsewhere)"
        )
    mask = float(central_mask_px or 0.0)
    if r_max - mask >= MIN_RADIUS_PX:
        return mask, r_max
    warnings.warn(
        f"the central-beam mask ({mask:.1f} px) reaches the detector edge nearest the centre "
        f"({r_max:.1f} px away): rotation is judged over radii 0-{r_max:.1f} px, bright-field "
        "disc included",
        StemNMFWarning,
        stacklevel=4,
    )
    return 0.0, r_max


def _grid(
    shape: tuple[int, int],
    centres: np.ndarray,
    n_radii: int | None,
    n_angles: int,
    r_range: tuple[float, float] | None,
    central_mask_px: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    if n_angles < 2:
        raise InputError(f"n_angles must be at least 2, got {n_angles}")
    if r_range is None:
        centre = (centres[:, 0].mean(), centres[:, 1].mean())
        r_range = default_r_range(shape, centre, central_mask_px)
    r_min, r_max = (float(v) for v in r_range)
    if not 0 <= r_min < r_max:
        raise InputError(f"r_range {r_range} is empty; choose 0 <= r_min < r_max (pixels)")
    if n_radii is not None and n_radii < 1:
        raise InputError(f"n_radii must be at least 1, got {n_radii}")
    n_r = int(n_radii) if n_radii is not None else max(2, int(np.ceil(r_max - r_min)) + 1)
    return polar_grid(n_r, n_angles, r_min, r_max)


def _scaled_polar(
    block: np.ndarray,
    centres: np.ndarray,
    each: bool,
    radii: np.ndarray,
    angles: np.ndarray,
    scaling: str,
) -> np.ndarray:
    """``(b, k_y, k_x)`` patterns -> ``(b, R, T)`` scaled polar patterns."""
    x = np.maximum(_check_finite(block), 0.0)
    if each:
        centres = pattern_centres(x, empty=0.0)
    if scaling == "sqrt":
        x = np.sqrt(x)
    elif scaling == "log":
        peak = x.max(axis=(1, 2), keepdims=True)
        x = np.log1p(x / np.maximum(0.01 * peak, 1e-300))
    return polar_transform(x, centres, radii, angles)


def _spectra_block(block: np.ndarray, centres: np.ndarray, *args: Any) -> np.ndarray:
    """One block of patterns (and its own centres, or one for all) -> azimuthal spectra."""
    return np.fft.rfft(normalise_polar(_scaled_polar(block, centres, *args)), axis=-1)


def polar_patterns(
    patterns: Any,
    *,
    centre: Any = "auto",
    n_radii: int | None = None,
    n_angles: int = 360,
    r_range: tuple[float, float] | None = None,
    central_mask_px: float | None = None,
    scaling: Scaling = "sqrt",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scaled patterns resampled on a polar grid about the direct beam.

    Parameters
    ----------
    patterns
        ``(P, k_y, k_x)`` patterns (numpy, or an xarray DataArray such as
        ``result.diffractions``).
    centre
        ``"auto"`` (the direct beam of the mean pattern, sub-pixel), ``"each"`` (each
        pattern's own), ``(y, x)`` or ``(P, 2)`` in pixels.
    n_radii
        Radii sampled (default one per pixel over ``r_range``).
    n_angles
        Angles sampled over 360 degrees (the angular bin is ``360 / n_angles`` degrees).
    r_range
        ``(r_min, r_max)`` in pixels; default from ``central_mask_px`` (or 0) to the largest
        radius inside the detector from the centre, the mask dropped (with a note) when it
        leaves less than :data:`MIN_RADIUS_PX` (see :func:`default_r_range`); patterns too
        small for even that are refused with the reason.
    central_mask_px
        Radius of the central-beam mask in pixels: radii below it are not used.
    scaling
        ``"sqrt"`` (default), ``"log"`` (``log1p`` of the pattern over 1 % of its maximum) or
        ``"none"``, applied before the transform so that weak reflections count.

    Returns
    -------
    polar : numpy.ndarray
        ``(P, R, n_angles)`` float64, not normalised.
    grid : dict
        ``radii_px`` ``(R,)``, ``angles_rad`` ``(T,)``, ``centres_px`` ``(1 or P, 2)``.
    """
    stack = np.asarray(_as_stack(patterns), dtype=np.float64)
    _check_finite(stack)
    if scaling not in ("none", "sqrt", "log"):
        raise InputError(f"scaling={scaling!r}; choose 'none', 'sqrt' or 'log'")
    centres, each = _centre_arg(stack, centre)
    radii, angles = _grid(stack.shape[1:], centres, n_radii, n_angles, r_range, central_mask_px)
    if each:
        centres = pattern_centres(stack, empty=0.0)
    polar = _scaled_polar(stack, centres, False, radii, angles, scaling)
    return polar, {"radii_px": radii, "angles_rad": angles, "centres_px": centres}


def polar_spectra(patterns: Any, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Spectra along the azimuth of the normalised polar patterns.

    Takes the options of :func:`polar_patterns`; returns ``(P, R, n_angles // 2 + 1)``
    complex128 spectra and the grid.
    """
    polar, grid = polar_patterns(patterns, **kw)
    return np.fft.rfft(normalise_polar(polar), axis=-1), grid


def _tile(spec_a: np.ndarray, spec_b: np.ndarray, n_angles: int) -> np.ndarray:
    rho, shift = azimuthal_correlation_max(spec_a, spec_b, n_angles)
    return np.stack([rho, shift.astype(np.float64)])


def _mirror(tile: np.ndarray, n_angles: int) -> np.ndarray:
    rho, shift = tile
    return np.stack([rho.T, np.mod(-shift.T, n_angles)])


def _tiled(spec: da.Array, n_angles: int) -> da.Array:
    """``(2, P, P)``: similarity and shift (bins), upper-triangle tiles mirrored below."""
    nb = len(spec.chunks[0])
    name = f"similarity-tile-{tokenize(spec, n_angles)}"
    graph: dict[Any, Any] = {}
    for i in range(nb):
        for j in range(nb):
            if i <= j:
                graph[(name, 0, i, j)] = (
                    _tile, (spec.name, i, 0, 0), (spec.name, j, 0, 0), n_angles
                )  # fmt: skip
            else:
                graph[(name, 0, i, j)] = (_mirror, (name, 0, j, i), n_angles)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=[spec])
    return da.Array(hlg, name, ((2,), spec.chunks[0], spec.chunks[0]), dtype=np.float64)


def rotational_similarity(
    patterns: Any,
    *,
    centre: Any = "auto",
    n_radii: int | None = None,
    n_angles: int = 360,
    r_range: tuple[float, float] | None = None,
    central_mask_px: float | None = None,
    scaling: Scaling = "sqrt",
    block: int = 256,
    lazy: bool = False,
) -> tuple[Any, Any]:
    """Rotation-invariant similarity of every pair of patterns, and the rotation between them.

    ``rho_ij = max_tau sum_{r, theta} p_i(r, theta) p_j(r, theta + tau)`` over normalised
    polar patterns (see :func:`polar_spectra` for the options), computed by an FFT along the
    azimuth and one complex matrix product per frequency, tile by tile.

    Parameters
    ----------
    patterns
        ``(P, k_y, k_x)`` patterns, e.g. ``result.diffractions``.
    block
        Tile size ``B``: a task holds ``B x B x n_angles`` correlation values at most.
    lazy
        Return dask arrays (the tiled graph) instead of computing. ``patterns`` may be a dask
        array (e.g. thousands of patterns from a scan): they are transformed block by block
        in the graph; ``centre="auto"`` or ``"each"`` then reads them once first, to find
        the direct beam of their mean (pass ``centre=(y, x)`` to build without reading).

    Returns
    -------
    rho : numpy.ndarray or dask.array.Array
        ``(P, P)`` similarity in ``[-1, 1]``, symmetric, 1 on the diagonal for a
        non-flat pattern.
    angle_deg : numpy.ndarray or dask.array.Array
        ``(P, P)`` the rotation in degrees, in ``[0, 360)``, that takes pattern ``i`` onto
        pattern ``j`` (counter-clockwise from ``+k_x`` toward ``+k_y``), to one angular bin
        (``360 / n_angles``).
    """
    if block < 1:
        raise InputError(f"block must be a positive number of patterns, got {block}")
    if scaling not in ("none", "sqrt", "log"):
        raise InputError(f"scaling={scaling!r}; choose 'none', 'sqrt' or 'log'")
    stack = _as_stack(patterns)
    if not isinstance(stack, da.Array):
        stack = da.from_array(stack, chunks=(block, -1, -1), name=f"patterns-{tokenize(stack)}")
    stack = stack.rechunk((block, -1, -1))
    centres, each = _centre_arg(stack, centre)
    radii, angles = _grid(stack.shape[1:], centres, n_radii, n_angles, r_range, central_mask_px)
    if centres.shape[0] > 1:  # one centre per pattern: split them like the patterns
        centre_arg: Any = da.from_array(centres, chunks=(stack.chunks[0], 2))
        centre_ind: Any = "pc"
    else:
        centre_arg, centre_ind = centres, None
    token = tokenize(stack, centres, each, radii, angles, scaling)
    spec = da.blockwise(
        _spectra_block, "prf", stack, "pyx", centre_arg, centre_ind, each, None,
        radii, None, angles, None, scaling, None,
        new_axes={"r": radii.size, "f": n_angles // 2 + 1}, concatenate=True,
        dtype=np.complex128, name=f"polar-spectra-{token}",
    )  # fmt: skip
    both = _tiled(spec, n_angles)
    rho, angle = both[0], both[1] * (360.0 / n_angles)
    if lazy:
        return rho, angle
    rho_np, angle_np = da.compute(rho, angle)
    return rho_np, angle_np
