"""The estimator: constrained NMF of a scan, and the PCA baseline.

The fit alternates a distributed map update (chunk tasks, or one global task under the map
constraint) with a driver-side diffraction update from tree-reduced statistics; see
``DESIGN.md`` section 4 and :mod:`dask_stemnmf.nmf.stats`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .._kernels.constraints import bandlimit_mask
from .._kernels.masks import bright_field_extent, disc_mask, find_bright_field_disc
from .._kernels.nmf import hals_sweeps, loss_change, mu_step, nnls_clip
from ..data import rechunk_scan
from ..errors import ConvergenceWarning, InputError, StemNMFWarning
from ..purity import plan_separation
from ..schema import validate_dataset
from ..values import pixel_sums, value_report_from, value_stats
from .calibration import MapResolution, default_continuity_radius, map_resolution, probe_cutoff
from .continuity import FOREIGN_FILL_STEP, fill_all, poisson_sigma
from .init import Subspace, leading_subspace, nndsvda, random_init
from .merge import duplicate_pair, merge_columns, residual_seed
from .resolution import dose_limited_cutoff
from .stats import (
    KL_EPS,
    Transform,
    c_update,
    c_update_constrained,
    data_products,
    fused_update,
    kl_c_update,
    kl_statistics,
    row_statistics,
    s_statistics,
    split_statistics,
)
from .stopping import DRIFT_TOL, diffraction_drift, no_progress
from .versions import versions

__all__ = ["ConstrainedNMF", "decompose"]

Solver = Literal["hals", "mu", "als"]

#: Iterations over which the stopping rule judges progress (and the least number for which
#: every constraint acts at full strength before a fit may stop).
STOP_WINDOW = 10


def _number(value: Any) -> bool:
    """Whether ``value`` is a plain real number (an int or a float, not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class ConstrainedNMF:
    """Constrained non-negative matrix factorisation of a 4D-STEM scan (or spectrum image).

    ``D (N positions x M pixels) ~ C S^T`` with maps ``C >= 0`` and diffractions ``S >= 0``,
    each diffraction normalised to sum 1 (the maps carry the counts). Optional constraints
    (Kimoto et al., Sci. Rep. 2025): maps band-limited to the microscope's resolution, and
    diffractions without artificial dips.

    Parameters
    ----------
    n_components
        Number of components ``K``.
    solver
        ``"hals"`` (hierarchical ALS with Gillis-Glineur inner loops; default), ``"mu"``
        (Lee-Seung multiplicative) or ``"als"`` (least squares then clipping).
    map_resolution_nm
        The map constraint. ``"auto"`` (default): the coarser of the probe's resolution
        and the dose-limited one (the Fourier ring correlation of two binomially thinned
        halves of the counts, :mod:`dask_stemnmf.nmf.resolution`; chosen by the README's
        validation table, where it beat the probe's limit alone at 1,500 e/pattern);
        ``"probe"``: the probe's resolution (``1.028 / probe_fwhm_nm`` when the scan holds
        the probe's FWHM, else ``2 alpha / lambda``), or the dose-limited one with a note
        when the scan lacks that calibration; a length ``d`` in nm (``q_c = 1/d``);
        ``None`` turns the constraint off (primitive maps).
    diffraction_continuity
        Fill artificial dips in the diffractions.
    init
        ``"nndsvda"`` or ``"random"``, or a tuple ``(C, S)`` of initial factors
        (``(scan_y, scan_x, K)`` and ``(M, K)``).
    max_iter, tol
        Stop after ``max_iter`` iterations, or when the loss makes no progress: its
        decrease per iteration over the last ``2 * STOP_WINDOW`` (20; at least 11 just
        after the constraints reach full strength) iterations, from a straight-line fit,
        relative to the last loss, is below ``tol`` or within two
        standard errors of the fit (:func:`dask_stemnmf.nmf.stopping.no_progress`; the
        continuity fill makes the loss chatter on its plateau), and no diffraction has moved
        by more than ``DRIFT_TOL`` (2e-3, one minus the cosine) between the last two drift
        checks (one every ``STOP_WINDOW`` iterations)
        (:func:`dask_stemnmf.nmf.stopping.diffraction_drift`: on the loss's plateau the
        components still move), once every constraint has acted at full strength for
        ``STOP_WINDOW`` iterations; reaching ``max_iter`` warns. ``tol=1e-6`` by the
        validation table (README; measured with the loss test alone): against ``1e-5`` it
        raised the mean map cosine on 12 of 16 cells and lowered it on none, at 1.8x the
        iterations (median; 1-7x). The drift test by the README's "Stopping" table. Near
        ``max_iter`` a fit may end with a duplicate pair unmerged (see ``max_merges``).
    random_state
        Seed of the initialisation.
    continuity_radius_px
        Radius of the closing disc (default one Bragg disc from the calibration).
    dip_threshold, dip_sigma
        A valley is filled only where it is deeper than both ``dip_threshold`` times the
        diffraction's maximum and ``dip_sigma`` times the counting noise of that pixel
        (estimated from the pass's statistics): noise-level valleys are not artefacts.
    continuity_warm_start
        Iterations before the continuity constraint starts.
    fill_foreign_peaks
        Also raise each diffraction's holes at other components' Bragg spots to its level on
        the same rings beside them (:func:`dask_stemnmf.nmf.continuity.fill_all`): the
        holes of the paper's Fig. 1c are a whole disc wide, beyond a closing that keeps
        the real valleys between close discs.
    foreign_fill_step
        Share of each such hole's depth raised per fill, in ``(0, 1]`` (the README's
        "The step of the fill at other components' spots": a full step raises the other
        components at a weak precipitate's discs each iteration, and least squares takes
        the intensity back from the weak component until it is lost).
    merge_threshold, max_merges
        Once the loss has stopped falling (the stopping rule's loss test), the two
        components whose diffractions have a cosine
        above ``merge_threshold`` (the most alike pair) are merged and the freed component
        starts again where the data exceed the model most; the fit then goes on, up to
        ``max_merges`` times (:mod:`dask_stemnmf.nmf.merge`: least squares often spends two
        components on copies of the amorphous halo while a small precipitate gets none).
        ``None`` turns it off. A merge is left out when fewer iterations remain than the
        warm start and two stopping windows (30 by default). The loss rises at a merge, then
        returns to about where it was (within 0.6 % on the README's 16 scans): the merge
        trades almost nothing in fit for a factorisation whose components are the sources.
    separate_halo
        After the fit, move the amorphous halo's share out of each crystalline component's
        diffraction and into the halo's map (:mod:`dask_stemnmf.purity`): a precipitate's
        column holds crystal and glass, and least squares cannot tell a pure crystalline
        component from one holding a share of the halo (the product ``C S^T`` is the same),
        so fits land on mixtures. Of the equally good factorisations this takes the one
        whose crystalline patterns hold the least halo (only the few clipped pixels change
        the product; their share is in the attrs). 2-D patterns only.
    inner_sweeps, inner_tol
        HALS inner-loop limits.
    map_sweeps, dykstra_iter
        Component sweeps and Dykstra steps of the constrained map update.
    negative
        Negative values (background-subtracted files): ``"clip"`` (default: set to 0, with
        a note giving their count and minimum), ``"offset"`` (shift all values up) or
        ``"refuse"``.
    bright_field_mask
        Leave the direct-beam disc out of the fit: ``"auto"`` (default; found in the mean
        pattern, out to where its soft edge and the detector's tail fall to the scattered
        background, :func:`dask_stemnmf._kernels.masks.bright_field_extent`), a radius in
        pixels about the found centre, or ``None``.
        The default was chosen by ground-truth recovery on the simulator, where it doubles
        the matched cosine of the precipitates' diffractions (README). Spectra have no disc. Masked
        pixels, ``detector_mask``'s invalid pixels and all-zero pixels are excluded from the
        fit and come back as zeros in the diffractions.
    noise_normalisation
        Fit ``D_ij / sqrt(a_i b_j)`` (``a``: each position's mean count, ``b``: each pixel's
        mean count), so that Poisson noise is about even everywhere and the bright pixels do
        not dominate the least squares; the factors are scaled back (``C`` by ``sqrt(a)``,
        ``S`` by ``sqrt(b)``). With the map constraint the physical maps (``C`` times
        ``sqrt(a)``) are the ones kept band-limited.
    loss
        ``"ls"`` (least squares) or ``"kl"`` (generalised Kullback-Leibler divergence, the
        Poisson likelihood; with ``solver="mu"`` only, two data passes per iteration, not yet
        combined with the constraints or the normalisation). With ``"kl"`` the reported loss
        is the divergence per count (over ``sum D``).
    persist
        Keep the data in cluster memory between iterations: ``"auto"`` (as float32 when
        that fits in half the memory, else in the stored dtype when that fits, else stream
        from storage every pass), ``True`` (as float32) or ``False`` (always stream).
    callback
        Called after every iteration with ``(iteration, relative_loss)``.
    checkpoint, checkpoint_every
        Called every ``checkpoint_every`` iterations (least-squares loss) with the state a
        run can resume from: ``iteration``, ``C`` (lazy ``(scan_y, scan_x, K)`` maps),
        ``S``, ``scale``, ``losses``, ``loss``, ``fraction``, ``n_dips``. Pass it back to
        :meth:`fit` as ``resume`` (with ``C`` as an array) to continue that run: the
        result equals the uninterrupted run's.

    Attributes
    ----------
    result_ : xarray.Dataset
        ``maps (component, scan_y, scan_x)``, ``diffractions (component, *signal)``,
        ``loss (iteration)`` (residual over ``||D||^2``), ``diffraction_sigma`` (component,
        *signal) (counting noise of each diffraction pixel, same normalisation), attrs with
        parameters, versions, timings, ``n_iter``, ``converged``, the map resolution used
        (``map_cutoff_cycles_per_px``, ``map_cutoff_inv_nm``, ``map_resolution``),
        ``probe_fwhm_nm``, ``init_svd`` and ``notes``.
    """

    def __init__(
        self,
        n_components: int,
        *,
        solver: Solver = "hals",
        map_resolution_nm: float | str | None = "auto",
        diffraction_continuity: bool = True,
        init: str | tuple[Any, Any] = "nndsvda",
        max_iter: int = 200,
        tol: float = 1e-6,
        random_state: int = 0,
        continuity_radius_px: float | None = None,
        dip_threshold: float = 0.02,
        dip_sigma: float = 4.0,
        continuity_warm_start: int = 10,
        fill_foreign_peaks: bool = True,
        foreign_fill_step: float = FOREIGN_FILL_STEP,
        merge_threshold: float | None = 0.9,
        max_merges: int = 3,
        separate_halo: bool = True,
        inner_sweeps: int = 10,
        inner_tol: float = 0.01,
        map_sweeps: int = 2,
        dykstra_iter: int = 50,
        negative: Literal["clip", "offset", "refuse"] = "clip",
        bright_field_mask: float | Literal["auto"] | None = "auto",
        noise_normalisation: bool = False,
        loss: Literal["ls", "kl"] = "ls",
        persist: bool | Literal["auto"] = "auto",
        callback: Callable[[int, float], None] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_every: int = 10,
    ) -> None:
        self.n_components = n_components
        self.solver = solver
        self.map_resolution_nm = map_resolution_nm
        self.diffraction_continuity = diffraction_continuity
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.continuity_radius_px = continuity_radius_px
        self.dip_threshold = dip_threshold
        self.dip_sigma = dip_sigma
        self.continuity_warm_start = continuity_warm_start
        self.fill_foreign_peaks = fill_foreign_peaks
        self.foreign_fill_step = foreign_fill_step
        self.merge_threshold = merge_threshold
        self.max_merges = max_merges
        self.separate_halo = separate_halo
        self.inner_sweeps = inner_sweeps
        self.inner_tol = inner_tol
        self.map_sweeps = map_sweeps
        self.dykstra_iter = dykstra_iter
        self.negative = negative
        self.bright_field_mask = bright_field_mask
        self.noise_normalisation = noise_normalisation
        self.loss = loss
        # state of the fit in progress
        self._transform: Transform = Transform()
        self._keep: np.ndarray | None = None
        self._col_sqrt: np.ndarray | None = None
        self._row_sqrt: da.Array | None = None
        self._row_np: np.ndarray | None = None
        self.persist = persist
        self.callback = callback
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self._resume: dict[str, Any] | None = None

    # -- checks ---------------------------------------------------------------------------
    def _check_params(self, n: int, m: int) -> None:
        k = self.n_components
        if not isinstance(k, int | np.integer) or k < 1:
            raise InputError(f"n_components must be a positive integer, got {k!r}")
        if k > min(n, m):
            raise InputError(
                f"n_components={k} exceeds the data's size ({n} positions x {m} pixels); "
                f"use at most {min(n, m)}"
            )
        if self.solver not in ("hals", "mu", "als"):
            raise InputError(f"solver={self.solver!r}; choose 'hals', 'mu' or 'als'")
        if self.max_iter < 1 or not self.tol >= 0:
            raise InputError("max_iter must be >= 1 and tol >= 0")
        seed = self.random_state
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
            raise InputError(f"random_state must be a non-negative integer, got {seed!r}")
        thr = self.merge_threshold
        if thr is not None and not (_number(thr) and 0 < thr <= 1):
            raise InputError(f"merge_threshold={thr!r}; choose a cosine in (0, 1] or None")
        step = self.foreign_fill_step
        if not (_number(step) and 0 < step <= 1):
            raise InputError(f"foreign_fill_step={step!r}; choose a share in (0, 1]")
        if not isinstance(self.max_merges, int | np.integer) or self.max_merges < 0:
            raise InputError(f"max_merges must be a non-negative integer, got {self.max_merges!r}")
        if self.negative not in ("clip", "offset", "refuse"):
            raise InputError(f"negative={self.negative!r}; choose 'clip', 'offset' or 'refuse'")
        res = self.map_resolution_nm
        if res is not None and res not in ("probe", "auto") and not (_number(res) and res > 0):
            raise InputError(
                f"map_resolution_nm={res!r}; choose 'auto', 'probe', a length in nm or None"
            )
        if self.loss not in ("ls", "kl"):
            raise InputError(f"loss={self.loss!r}; choose 'ls' or 'kl'")
        if self.loss == "kl" and (
            self.solver != "mu"
            or self.map_resolution_nm is not None
            or self.diffraction_continuity
            or self.noise_normalisation
        ):
            raise InputError(
                "loss='kl' needs solver='mu' and, for now, no constraints and no "
                "noise_normalisation: pass map_resolution_nm=None, diffraction_continuity=False"
            )

    def _prepared_data(self, ds: xr.Dataset) -> tuple[da.Array, np.ndarray, np.ndarray]:
        """Check the values; return the data, and ``(M,)`` pixel sums and sums of squares.

        One pass over the data when it is clean (float64 sums per pixel). Pixels that
        ``detector_mask`` marks invalid are zeroed first, so NaN/Inf there are allowed.
        """
        data = ds["intensity"].data
        if "detector_mask" in ds.variables:
            valid = np.asarray(ds["detector_mask"].values, dtype=bool)
            if not valid.all():
                zero = data.dtype.type(0)
                data = da.where(valid, data, zero)

        stats, sums = dask.compute(value_stats(data), pixel_sums(data))
        report = value_report_from(stats, data.size)
        if report.n_nan or report.n_inf:
            raise InputError(
                f"intensity holds {report.n_nan} NaN and {report.n_inf} Inf values outside "
                "detector_mask; mask those pixels (detector_mask) or replace them before the fit"
            )
        if report.n_negative:
            if self.negative == "refuse":
                raise InputError(
                    f"intensity holds {report.n_negative} negative values (min "
                    f"{report.minimum:g}); pass negative='clip' or negative='offset'"
                )
            if self.negative == "clip":
                data = da.maximum(data, 0)
                action = "clipped to 0 (negative='offset' shifts all values instead)"
            else:
                data = data - data.dtype.type(report.minimum)
                action = f"offset by {-report.minimum:g} (negative='clip' clips instead)"
            self._note(
                f"{report.n_negative} negative values (min {report.minimum:g}, as after a "
                f"background subtraction) {action}"
            )
            (sums,) = dask.compute(pixel_sums(data))
        return data, sums[0], sums[1]

    def _fit_pixels(
        self, ds: xr.Dataset, sig: tuple[str, ...], pixel_sum: np.ndarray
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Choose the pixels the fit uses; return the ``(M,)`` mask and a description.

        A pixel is used when ``detector_mask`` marks it valid, it is not zero everywhere, and
        it lies outside the bright-field disc (when asked).
        """
        sig_shape = tuple(ds.sizes[d] for d in sig)
        valid = pixel_sum > 0
        info: dict[str, Any] = {"all_zero_pixels": int((~valid).sum())}
        if "detector_mask" in ds.variables:
            user = np.asarray(ds["detector_mask"].values, dtype=bool).reshape(-1)
            valid &= user
            info["detector_mask_excluded"] = int((~user).sum())
        bf = self.bright_field_mask
        if bf is not None and len(sig_shape) == 2:
            mean = (pixel_sum / max(ds.sizes["scan_y"] * ds.sizes["scan_x"], 1)).reshape(sig_shape)
            cy, cx, r = find_bright_field_disc(mean)
            radius = float(bf) if bf != "auto" else bright_field_extent(mean, cy, cx, r)
            disc = disc_mask(sig_shape, cy, cx, radius).reshape(-1)
            valid &= ~disc
            info["bright_field_disc"] = {"centre_px": [cy, cx], "radius_px": radius}
        if not valid.any():
            raise InputError("no detector pixel is left to fit after masking; check the masks")
        return valid, info

    def _normalise_noise(self, data: da.Array, pixel_mean: np.ndarray) -> float:
        """Set the Poisson-normalisation transform (one pass); return the weighted ``||D||^2``."""
        self._col_sqrt = np.sqrt(pixel_mean)
        col = 1.0 / self._col_sqrt
        rows = row_statistics(data, Transform(self._transform.pixels, col)).persist()
        mean = rows[..., 0]
        row_sqrt = da.sqrt(mean)
        row = da.where(mean > 0, 1.0 / da.where(mean > 0, row_sqrt, 1.0), 0.0).astype(np.float32)
        d2 = da.sum(da.where(mean > 0, rows[..., 1] / da.where(mean > 0, mean, 1.0), 0.0))
        row, self._row_sqrt, d2_value = dask.persist(row, row_sqrt, d2)
        self._transform = Transform(self._transform.pixels, col, row)
        return float(d2_value.compute())

    def _persist_dtype(self, data: da.Array) -> np.dtype | None:
        """Dtype to hold the data in memory in: float32, the stored dtype, or None (stream)."""
        if self.persist is False:
            return None
        if self.persist is True:
            return np.dtype(np.float32)
        try:
            from distributed import get_client

            info = get_client().scheduler_info(n_workers=-1)
            memory = sum(w.get("memory_limit", 0) for w in info["workers"].values())
        except (ImportError, ValueError):
            import psutil

            memory = psutil.virtual_memory().available
        as_float = data.size * 4
        if as_float < 0.5 * memory:
            return np.dtype(np.float32)
        if data.nbytes < 0.5 * memory:
            return data.dtype
        return None

    # -- the fit ----------------------------------------------------------------------------
    def fit(self, ds: xr.Dataset, resume: dict[str, Any] | None = None) -> ConstrainedNMF:
        """Fit the factorisation to a scan.

        Parameters
        ----------
        ds
            A scan following the data model (see :func:`dask_stemnmf.open_4dstem`).
        resume
            A state given to ``checkpoint`` by an earlier run of the same model on the
            same scan: the fit continues from it.

        Returns
        -------
        ConstrainedNMF
            ``self``, with ``result_``.
        """
        start = time.perf_counter()
        self._notes: list[str] = []
        sig = validate_dataset(ds)
        ds = rechunk_scan(ds, None)
        ny, nx = ds.sizes["scan_y"], ds.sizes["scan_x"]
        sig_shape = tuple(ds.sizes[d] for d in sig)
        self._check_params(ny * nx, int(np.prod(sig_shape)))
        k = int(self.n_components)
        data, pixel_sum, pixel_sq = self._prepared_data(ds)
        valid, mask_info = self._fit_pixels(ds, sig, pixel_sum)
        idx = np.flatnonzero(valid)
        # chunk tasks take the fitted pixels themselves: no extra layers on the data graph
        self._transform = Transform(pixels=idx if idx.size < valid.size else None)
        m = int(idx.size)
        if k > m:
            raise InputError(f"n_components={k} exceeds the {m} detector pixels left after masking")
        d2 = float(pixel_sq[idx].sum())
        self._col_sqrt = None
        self._row_sqrt = None
        self._row_np = None
        if self.noise_normalisation:
            d2 = self._normalise_noise(data, pixel_sum[idx] / (ny * nx))
            if self.map_resolution_nm is not None:
                # the physical maps (fitted maps times sqrt(a)) carry the band limit
                assert self._row_sqrt is not None
                r = np.asarray(self._row_sqrt.compute(), dtype=np.float64)
                positive = r[r > 0]
                self._row_np = np.maximum(r, positive.min() if positive.size else 1.0)
        persist = self._persist_dtype(data)
        if persist is not None:
            # held in cluster memory as float32 when that fits: no conversion per pass
            data = data.astype(persist).persist()
        # the dose-limited resolution is measured (thinned halves) only where it is used
        res = self.map_resolution_nm
        dose_needed = res == "auto" or (res == "probe" and np.isnan(probe_cutoff(ds)))
        thin = dose_needed and np.dtype(ds["intensity"].dtype).kind in "ui"
        subspace: Subspace | None = None
        if self.init == "nndsvda" or dose_needed:
            # one exact SVD pass, then the data (and its thinned halves) projected on it
            subspace = leading_subspace(data, k, self.random_state, self._transform, counts=thin)
        resolution = self._map_resolution(ds, subspace)
        self._keep = None
        if not np.isnan(resolution.cutoff_cycles_per_px):
            self._keep = bandlimit_mask((ny, nx), 1.0, resolution.cutoff_cycles_per_px)
        radius = self.continuity_radius_px or default_continuity_radius(ds, sig)
        step = float(ds.attrs.get("scan_step_nm", float("nan")) or float("nan"))
        probe_px = _probe_fwhm_nm(ds) / step if step > 0 else float("nan")
        self._probe_px = probe_px if np.isfinite(probe_px) and probe_px > 0 else 1.0

        disc_info = mask_info.get("bright_field_disc")
        centre = tuple(disc_info["centre_px"]) if disc_info else None

        def fill(
            S: np.ndarray, fraction: float, h: np.ndarray, t: np.ndarray
        ) -> tuple[np.ndarray, int]:
            # dips are judged on the physical diffractions, against their counting noise
            col = self._col_sqrt
            phys, sigma = self._physical(S, h, t)
            floor = self.dip_sigma * sigma
            # a component whose map has died (``H_kk`` ~ 0) has no counts to judge its dips
            # by (its noise floor is unbounded): it is left as it is
            alive = _live_maps(h)
            filled = phys.copy()
            filled[:, alive], n = fill_all(
                phys[:, alive], idx, sig_shape, radius, self.dip_threshold, floor[:, alive],
                fraction, foreign=bool(self.fill_foreign_peaks), centre=centre,
                foreign_step=float(self.foreign_fill_step),
            )  # fmt: skip
            return (filled if col is None else filled / col[:, None]), n

        def halo(
            S: np.ndarray, h: np.ndarray, t: np.ndarray, weight: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
            if not self.separate_halo or len(sig) != 2 or k < 2:
                return None
            return self._halo_plan(S, h, t, weight, idx, sig, sig_shape, mask_info, radius)

        t_init = time.perf_counter()
        self._resume = resume
        if resume is not None:
            if self.loss == "kl":
                raise InputError("resume needs loss='ls'; KL fits are not checkpointed")
            C = da.asarray(np.asarray(resume["C"], dtype=np.float32)).rechunk(
                (data.chunks[0], data.chunks[1], k)
            )
            S = np.asarray(resume["S"], dtype=np.float64)
            if C.shape != (ny, nx, k) or S.shape != (m, k):
                raise InputError(
                    "the checkpoint does not fit this scan and model (shapes differ); start afresh"
                )
            C = C.persist()
        else:
            C, S = self._initial(data, k, float(pixel_sum[idx].sum()) / (ny * nx * m), subspace)
        t_loop = time.perf_counter()
        if self.loss == "kl":
            total = float(pixel_sum[idx].sum())
            C, S, losses, converged = self._iterate_kl(data, C, S, total)
            n_dips, sigma, merges, separation = 0, None, [], None
        else:
            C, S, losses, converged, n_dips, sigma, merges, separation = self._iterate(
                data, C, S, d2, fill, halo
            )
        if self._col_sqrt is not None and self._row_sqrt is not None:
            # undo the normalisation: C by sqrt(a), S by sqrt(b), then S sums to 1 again
            S, scale = _normalise(S * self._col_sqrt[:, None])
            if sigma is not None:
                sigma = sigma * self._col_sqrt[:, None] / scale
            row = self._row_sqrt.astype(np.float32)[..., None]
            C = (C * row * scale.astype(np.float32)).persist()
        if not converged:
            warnings.warn(
                f"max_iter={self.max_iter} reached before the fit converged (its loss still "
                f"falling by more than tol={self.tol} per iteration, or its diffractions still "
                "moving); the result is usable, raise max_iter to go on",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.components_ = S.T.copy()
        timings = {
            "init_s": t_loop - t_init,
            "iterations_s": time.perf_counter() - t_loop,
            "total_s": time.perf_counter() - start,
        }
        fit = {
            "losses": losses, "converged": converged, "n_dips": n_dips, "merges": merges,
            "resolution": resolution, "sigma": sigma, "subspace": subspace,
            "separation": separation,
        }  # fmt: skip
        self.result_ = self._result(ds, sig, C, S, idx, mask_info, fit, radius, timings)
        return self

    def _update_maps(
        self, data: da.Array, C: da.Array, S: np.ndarray, scale: np.ndarray
    ) -> tuple[da.Array, da.Array]:
        """One lazy map update (chunk-wise, or global under the map constraint)."""
        if self._keep is None:
            return c_update(
                data, C, S, solver=self.solver, sweeps=self.inner_sweeps,
                inner_tol=self.inner_tol, scale=scale, transform=self._transform,
            )  # fmt: skip
        return c_update_constrained(
            data_products(data, S, self._transform), C, S, self._keep,
            sweeps=self.map_sweeps, n_iter=self.dykstra_iter, scale=scale, row=self._row_np,
        )  # fmt: skip

    def _iterate_kl(
        self, data: da.Array, C: da.Array, S: np.ndarray, total: float
    ) -> tuple[da.Array, np.ndarray, list[float], bool]:
        """Multiplicative updates for the KL loss: two data passes per iteration."""
        m = S.shape[0]
        S, scale = _normalise(S)
        losses: list[float] = []
        converged = False
        for it in range(self.max_iter):
            C = kl_c_update(data, C, S, scale=scale, transform=self._transform)
            stats = kl_statistics(data, C, S, transform=self._transform)
            C, stats = dask.persist(C, stats)
            st = stats.compute()
            numerator, colsum, divergence = st[:m], st[m], float(st[m + 1, 0])
            S = S * numerator / np.maximum(colsum, KL_EPS)[None, :]
            S, scale = _normalise(S)
            S = _reseed_dead(S, it, self.random_state)
            rel = divergence / total if total > 0 else 0.0
            losses.append(rel)
            if self.callback is not None:
                self.callback(it, rel)
            if it > 0 and 0 <= losses[-2] - rel <= self.tol * max(losses[-2], 1e-300):
                converged = True
                break
        C = (C * scale.astype(np.float32)).persist()
        return C, S, losses, converged

    def _iterate(
        self,
        data: da.Array,
        C: da.Array,
        S: np.ndarray,
        d2: float,
        fill: Callable[[np.ndarray, float, np.ndarray, np.ndarray], tuple[np.ndarray, int]],
        halo: Callable[..., tuple[np.ndarray, np.ndarray, dict[str, Any]] | None],
    ) -> tuple[
        da.Array, np.ndarray, list[float], bool, int, np.ndarray, list[int], dict[str, Any] | None
    ]:
        """Alternate the updates; return factors, losses, convergence, dips, noise, merges, halo.

        ``merges`` lists the iterations at which duplicate components were merged. After the
        iterations the halo's share is separated from the crystalline components
        (:func:`dask_stemnmf.purity.plan_separation`), then the continuity's last fill and a
        map update follow, so the result meets both constraints.

        The fit stops when the loss makes no significant progress over the last
        ``2 * STOP_WINDOW`` iterations (:func:`.stopping.no_progress`) and no diffraction
        has moved by more than ``DRIFT_TOL`` over the last window, and only once every
        constraint has acted at full strength for ``STOP_WINDOW`` iterations (the continuity
        fill starts after
        ``continuity_warm_start`` and is damped while it raises the loss).
        """
        m = S.shape[0]
        S, scale = _normalise(S)
        losses: list[float] = []
        fraction, converged, n_dips, loss = 1.0, False, 0, float("nan")
        q = h = t = np.zeros(0)
        first = 0
        full_since: int | None = None
        merges: list[int] = []
        fill_start = self.continuity_warm_start  # the fill's warm start, again after a merge
        # the diffractions a stopping window ago, and how far they have moved since
        ref: np.ndarray | None = None
        ref_it, drift = -1, float("inf")
        if self._resume is not None:
            state = self._resume
            S = np.asarray(state["S"], dtype=np.float64)
            scale = np.asarray(state["scale"], dtype=np.float64)
            losses = [float(v) for v in state["losses"]]
            loss, fraction = float(state["loss"]), float(state["fraction"])
            n_dips, first = int(state["n_dips"]), int(state["iteration"])
            full_since = state.get("full_since")
            merges = [int(v) for v in state.get("merges", [])]
            fill_start = int(state.get("fill_start", fill_start))
            ref = state.get("drift_ref")
            ref_it, drift = int(state.get("drift_since", -1)), float(state.get("drift", drift))
        fresh = first == 0  # the loss is taken from the statistics (start, after a merge)
        for it in range(first, self.max_iter):
            if self._keep is None:
                C, dloss, stats = fused_update(
                    data, C, S, solver=self.solver, sweeps=self.inner_sweeps,
                    inner_tol=self.inner_tol, scale=scale, transform=self._transform,
                    precise=fresh,
                )  # fmt: skip
            else:
                C, dloss = self._update_maps(data, C, S, scale)
                stats = s_statistics(data, C, precise=fresh, transform=self._transform)
            C, stats, dloss = dask.persist(C, stats, dloss)
            stats_np, dc = dask.compute(stats, dloss)
            q, h, t = split_statistics(stats_np, m)
            restarted = fresh and it > 0  # the first iteration after a merge
            if fresh:
                # the only losses taken from the statistics; the others add exact changes
                loss = d2 - 2.0 * float(np.sum(q * S)) + float(np.sum(h * (S.T @ S)))
                fresh = False
            else:
                loss += float(dc)
            s_old = S.copy()
            S = _drop_dead_maps(self._update_s(S, q, h), h)
            filling = self.diffraction_continuity and it >= fill_start
            if filling:
                S, n_dips = fill(S, fraction, h, t)
            loss += loss_change(s_old, S, q, h)
            rel = max(loss, 0.0) / d2 if d2 > 0 else 0.0
            if filling and losses and not restarted:
                # damped: a fill that raises the loss by more than 1 % halves the next step;
                # otherwise the step grows back to a full fill
                jump = rel > losses[-1] * 1.01
                fraction = max(fraction / 2, 0.125) if jump else min(1.0, 2 * fraction)
            S, scale = _normalise(S)
            S = _reseed_dead(S, it, self.random_state)
            losses.append(rel)
            if self.callback is not None:
                self.callback(it, rel)
            if filling and fraction < 1.0:
                full_since = None
            elif full_since is None and (filling or not self.diffraction_continuity):
                full_since = it
            if not filling and self.diffraction_continuity:
                ref, ref_it, drift = None, -1, float("inf")  # the warm start: not yet
            elif ref is None:
                ref, ref_it = S.copy(), it
            elif it - ref_it >= STOP_WINDOW:
                live = _live_maps(h)
                drift = diffraction_drift(ref[:, live], S[:, live])  # dead ones restart
                ref, ref_it = S.copy(), it
            pair = None
            if full_since is not None and it - full_since >= STOP_WINDOW:
                window = losses[-min(it - full_since + 1, 2 * STOP_WINDOW):]
                if no_progress(window, self.tol):
                    # on the loss's plateau: merge a duplicate pair as soon as there is one
                    # (and room to converge again: the warm start and two windows); stop
                    # once there is none and the diffractions have stopped moving
                    room = it + 1 + self.continuity_warm_start + 2 * STOP_WINDOW <= self.max_iter
                    pair = self._duplicates(S, merges) if room else None
                    if pair is None and drift <= DRIFT_TOL:
                        converged = True
                        break
                if pair is not None:
                    C, S = self._merge(data, C, S, scale, pair)
                    scale = np.ones_like(scale)
                    merges.append(it + 1)
                    fresh, full_since, fraction = True, None, 1.0
                    ref, ref_it, drift = None, -1, float("inf")
                    fill_start = it + 1 + self.continuity_warm_start
            due = (it + 1) % max(self.checkpoint_every, 1) == 0 and it + 1 < self.max_iter
            due = due and not fresh  # not right after a merge: its loss is not known yet
            if self.checkpoint is not None and due:
                self.checkpoint({
                    "iteration": it + 1, "C": C, "S": S.copy(), "scale": scale.copy(),
                    "losses": list(losses), "loss": loss, "fraction": fraction,
                    "n_dips": n_dips, "full_since": full_since, "merges": list(merges),
                    "fill_start": fill_start, "drift_ref": None if ref is None else ref.copy(),
                    "drift_since": ref_it, "drift": drift,
                })  # fmt: skip
        separation = None
        if losses and h.size:
            C, S, scale, q, h, t, loss, separation = self._separate(
                C, S, scale, q, h, t, loss, halo
            )
            if separation is not None and separation["shares"] and not self.diffraction_continuity:
                losses.append(max(loss, 0.0) / d2)  # the factors returned: after the clipping
        # counting noise of each normalised diffraction pixel, from the last pass
        sigma = poisson_sigma(S * scale, h, t) / scale if h.size else np.zeros_like(S)
        if self.diffraction_continuity and losses:
            # a last full fill, then maps fitted to the final diffractions: the result meets
            # the constraint exactly
            s_old = S * scale
            S, n_dips = fill(s_old, 1.0, h, t)
            loss += loss_change(s_old, S, q, h)
            S, scale = _normalise(S)
            C, dloss = self._update_maps(data, C, S, scale)
            C, dloss = dask.persist(C, dloss)
            loss += float(dloss.compute())
            scale = np.ones_like(scale)
            losses.append(max(loss, 0.0) / d2)
        C = (C * scale.astype(np.float32)).persist()
        return C, S, losses, converged, n_dips, sigma, merges, separation

    def _separate(
        self, C: da.Array, S: np.ndarray, scale: np.ndarray, q: np.ndarray, h: np.ndarray,
        t: np.ndarray, loss: float, halo: Callable[..., Any],
    ) -> tuple[
        da.Array, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, dict | None
    ]:
        """Take the halo's share out of the crystalline diffractions (no data pass).

        ``S' = S (I - E)``, ``C' = C (I + E)^T`` leaves ``C S^T`` unchanged; the statistics
        follow exactly (``Q' = Q (I + E)^T``, ``H' = (I + E) H (I + E)^T``), ``T = C^T (C*C)``
        as ``(I + E) T``: exact for the crystalline columns, whose maps do not change, so
        their counting noise ``(S' T')_k / H_kk^2 = (S T)_k / H_kk^2`` is what it was (the
        model ``C S^T`` is); for the amorphous ones it leaves out the square of the added
        maps. The loss takes the change of the clipping.
        """
        phys = S * scale
        weight = np.asarray(C.sum(axis=(0, 1)).compute(), dtype=np.float64) * phys.sum(axis=0)
        plan = halo(phys, h, t, weight)
        if plan is None or not plan[0].any():
            return C, S, scale, q, h, t, loss, None if plan is None else plan[2]
        shares, purified, info = plan
        x = np.eye(shares.shape[0]) + shares
        C = da.matmul(C, x.T.astype(np.float32)).persist()
        q, h, t = q @ x.T, x @ h @ x.T, x @ t
        linear = phys - phys @ shares
        loss += loss_change(linear, purified, q, h)
        info["clipped_share"] = float(
            ((purified - linear).sum(axis=0) * weight / np.maximum(phys.sum(axis=0), 1e-300)).sum()
            / max(float(weight.sum()), 1e-300)
        )
        S, scale = _normalise(purified)
        return C, S, scale, q, h, t, loss, info

    def _physical(
        self, S: np.ndarray, h: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the physical diffractions ``(M, K)`` and their counting noise ``(M, K)``.

        Without noise normalisation, ``S`` itself and :func:`.continuity.poisson_sigma`;
        with it, ``S`` times ``sqrt(b)`` and ``sqrt(b) / sqrt(H_kk)`` (normalised data have
        about unit variance per value).
        """
        col = self._col_sqrt
        if col is None:
            return S, poisson_sigma(S, h, t)
        return S * col[:, None], col[:, None] / np.sqrt(np.maximum(np.diag(h), 1e-300))[None, :]

    def _halo_plan(
        self, S: np.ndarray, h: np.ndarray, t: np.ndarray, weight: np.ndarray,
        idx: np.ndarray, sig: tuple[str, ...], sig_shape: tuple[int, ...],
        mask_info: dict[str, Any], radius: float,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:  # fmt: skip
        """Plan the separation on the physical diffractions ``S`` ``(M, K)``.

        Returns the shares in ``S``'s own scale (``shares[j, i]`` of column ``j`` out of
        column ``i``), the separated ``S`` (clipped at zero) and the attrs' record; ``None``
        with a note where the components cannot be told apart (e.g. a detector too small for
        the polar grid).
        """
        k = S.shape[1]
        col = self._col_sqrt
        phys, sigma = self._physical(S, h, t)
        sums = np.maximum(phys.sum(axis=0), 1e-300)
        full = np.zeros((k, int(np.prod(sig_shape))))
        noise = np.zeros_like(full)
        full[:, idx] = (phys / sums).T
        noise[:, idx] = (sigma / sums).T
        used = np.zeros(full.shape[1], dtype=bool)
        used[idx] = True
        trial = xr.Dataset(
            {
                "diffractions": (("component", *sig), full.reshape(k, *sig_shape)),
                "diffraction_sigma": (("component", *sig), noise.reshape(k, *sig_shape)),
                "fit_mask": (sig, used.reshape(sig_shape)),
                "maps": (("component", "scan_y", "scan_x"), weight[:, None, None]),
            },
            attrs={"masks": mask_info, "continuity_radius_px": radius},
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StemNMFWarning)
                _, purified, shares, lost = plan_separation(trial, weight)
        except (InputError, ValueError) as error:  # e.g. a detector too small for polar grids
            self._note(f"the halo's share was not separated from the crystalline components "
                       f"({error})")  # fmt: skip
            return None
        scaled = shares * sums[None, :] / sums[:, None]  # of column j out of column i
        separated = purified.reshape(k, -1)[:, idx].T * sums[None, :]
        if col is not None:
            separated = separated / col[:, None]
        info = {
            "shares": [[int(i), int(j), float(shares[j, i])] for j, i in np.argwhere(shares > 0)],
            "left_mixed": [int(i) for i in lost],
        }
        return scaled, separated, info

    def _duplicates(self, S: np.ndarray, merges: list[int]) -> tuple[int, int] | None:
        """Return the pair of components to merge now, or ``None`` (off, none alike, enough)."""
        if self.merge_threshold is None or len(merges) >= self.max_merges:
            return None
        return duplicate_pair(S, float(self.merge_threshold))

    def _merge(
        self, data: da.Array, C: da.Array, S: np.ndarray, scale: np.ndarray, pair: tuple[int, int]
    ) -> tuple[da.Array, np.ndarray]:
        """Merge a duplicate pair and seed the freed component from the residual (2 passes)."""
        a, b = pair
        C = C * scale.astype(np.float32)
        C, S, _ = merge_columns(C, S, a, b)
        blob, pattern = residual_seed(
            data, C, S, self._probe_px, self._transform, counts=self._col_sqrt is None
        )
        seed = da.from_array(blob[..., None], chunks=(*C.chunks[:2], 1))
        slot = np.zeros(C.shape[-1], dtype=np.float32)
        slot[b] = 1.0  # column b of the merged maps is empty: the seed takes it
        S = S.copy()
        S[:, b] = pattern
        return (C + seed * slot).persist(), S

    def _map_resolution(self, ds: xr.Dataset, subspace: Subspace | None) -> MapResolution:
        """Resolve the map constraint's cutoff: given, the probe's, or the dose-limited one."""
        dose = None
        if self.map_resolution_nm in ("auto", "probe") and subspace is not None:
            if subspace.thinned:
                dose = float(dose_limited_cutoff(subspace)["cutoff_cycles_per_px"])
        resolution = map_resolution(ds, self.map_resolution_nm, dose)
        if resolution.note:
            self._note(resolution.note)
        return resolution

    def _note(self, text: str) -> None:
        """Tell the user (a :class:`StemNMFWarning`) and keep the note for the result."""
        self._notes.append(text)
        warnings.warn(f"note: {text}", StemNMFWarning, stacklevel=3)

    def _initial(
        self, data: da.Array, k: int, mean: float, subspace: Subspace | None
    ) -> tuple[da.Array, np.ndarray]:
        if isinstance(self.init, tuple):
            c0, s0 = self.init
            c0 = da.asarray(c0).astype(np.float32).rechunk((data.chunks[0], data.chunks[1], k))
            s0 = np.asarray(s0, dtype=np.float64).reshape(-1, k)
            pixels = self._transform.pixels
            if pixels is not None and s0.shape[0] == int(np.prod(data.shape[2:])):
                s0 = s0[pixels]  # a start over the whole detector: keep the fitted pixels
            return c0, s0
        if self.init == "random":
            return random_init(data, k, mean, self.random_state, self._transform.pixels)
        if self.init == "nndsvda" and subspace is not None:
            c, S = nndsvda(subspace, mean)
            return c.rechunk((data.chunks[0], data.chunks[1], k)), S
        raise InputError(f"init={self.init!r}; choose 'nndsvda', 'random' or a (C, S) tuple")

    def _update_s(self, S: np.ndarray, q: np.ndarray, h: np.ndarray) -> np.ndarray:
        if self.solver == "hals":
            S = np.ascontiguousarray(S, dtype=np.float64)
            hals_sweeps(S, q, h, self.inner_sweeps, self.inner_tol)
            return S
        if self.solver == "mu":
            return mu_step(S.astype(np.float64), q, h)
        return nnls_clip(q, h)

    def _result(
        self,
        ds: xr.Dataset,
        sig: tuple[str, ...],
        C: da.Array,
        S: np.ndarray,
        idx: np.ndarray,
        mask_info: dict[str, Any],
        fit: dict[str, Any],
        radius: float,
        timings: dict[str, float],
    ) -> xr.Dataset:
        k = S.shape[1]
        res = fit["resolution"]
        sig_shape = tuple(ds.sizes[d] for d in sig)
        maps = da.moveaxis(C, -1, 0)
        full = np.zeros((int(np.prod(sig_shape)), k), dtype=np.float32)
        full[idx] = S
        diffractions = full.T.reshape((k, *sig_shape))
        sigma_full = np.zeros_like(full)
        if fit["sigma"] is not None:
            sigma_full[idx] = fit["sigma"]
        fit_mask = np.zeros(full.shape[0], dtype=bool)
        fit_mask[idx] = True
        coords: dict[str, Any] = {d: ds[d] for d in ("scan_y", "scan_x", *sig)}
        coords["component"] = np.arange(k)
        params = {
            "n_components": k,
            "solver": self.solver,
            "map_resolution_nm": "none"
            if self.map_resolution_nm is None
            else self.map_resolution_nm,
            "diffraction_continuity": bool(self.diffraction_continuity),
            "init": self.init if isinstance(self.init, str) else "given",
            "max_iter": self.max_iter,
            "tol": self.tol,
            "random_state": self.random_state,
            "continuity_radius_px": radius,
            "dip_threshold": self.dip_threshold,
            "dip_sigma": self.dip_sigma,
            "continuity_warm_start": self.continuity_warm_start,
            "fill_foreign_peaks": bool(self.fill_foreign_peaks),
            "foreign_fill_step": float(self.foreign_fill_step),
            "merge_threshold": "none" if self.merge_threshold is None else self.merge_threshold,
            "max_merges": self.max_merges,
            "separate_halo": bool(self.separate_halo),
            "inner_sweeps": self.inner_sweeps,
            "negative": self.negative,
            "noise_normalisation": bool(self.noise_normalisation),
            "loss_function": self.loss,
            "bright_field_mask": "none"
            if self.bright_field_mask is None
            else self.bright_field_mask,
        }
        return xr.Dataset(
            {
                "maps": (
                    ("component", "scan_y", "scan_x"),
                    maps,
                    {"units": ds["intensity"].attrs.get("units", "counts")},
                ),
                "diffractions": (
                    ("component", *sig),
                    diffractions,
                    {"normalisation": "each sums to 1"},
                ),
                "loss": (
                    ("iteration",),
                    np.asarray(fit["losses"]),
                    {"long_name": "residual over ||D||^2"},
                ),
                "diffraction_sigma": (
                    ("component", *sig),
                    sigma_full.T.reshape((k, *sig_shape)),
                    {"long_name": "counting-noise standard deviation of each diffraction pixel"},
                ),
                "fit_mask": (
                    sig,
                    fit_mask.reshape(sig_shape),
                    {"description": "detector pixels used by the fit"},
                ),
            },
            coords=coords,
            attrs={
                **params,
                "n_iter": len(fit["losses"]),
                "converged": bool(fit["converged"]),
                "merged_at_iterations": list(fit["merges"]),
                **({} if fit["separation"] is None else {"halo_separation": fit["separation"]}),
                "dips_filled_last_iteration": fit["n_dips"],
                "masks": mask_info,
                "map_cutoff_inv_nm": res.cutoff_inv_nm,
                "map_cutoff_cycles_per_px": res.cutoff_cycles_per_px,
                "map_resolution": {
                    "source": res.source,
                    "probe_cycles_per_px": res.probe_cycles_per_px,
                    "dose_cycles_per_px": res.dose_cycles_per_px,
                },
                "probe_fwhm_nm": _probe_fwhm_nm(ds),
                "init_svd": fit["subspace"].method if fit["subspace"] is not None else "none",
                "notes": list(self._notes),
                "timings_s": timings,
                "versions": versions(),
            },
        )


def _probe_fwhm_nm(ds: xr.Dataset) -> float:
    """Return the probe's FWHM from the scan (given, else the Airy probe's), NaN when unknown."""
    fwhm = float(ds.attrs.get("probe_fwhm_nm", float("nan")) or float("nan"))
    if fwhm > 0:
        return fwhm
    cutoff = probe_cutoff(ds)
    return 1.028 / cutoff if cutoff > 0 else float("nan")


def _normalise(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each diffraction to sum 1; return the factors the maps must take over."""
    scale = S.sum(axis=0)
    safe = np.where(scale > 0, scale, 1.0)
    return S / safe, safe


def _live_maps(h: np.ndarray) -> np.ndarray:
    """``(K,)`` True where a component's map is alive: ``H_kk`` above 1e-12 of the largest.

    ``h`` is ``C^T C`` ``(K, K)``. A dead map (a spare component's, 1e-40) has no counts:
    an update divided by its ``H_kk`` blows up, and its counting-noise floor is unbounded.
    """
    diag = np.diag(h)
    return diag > 1e-12 * max(float(diag.max()), 1e-300)


def _drop_dead_maps(S: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Zero the diffractions of components whose maps have died (:func:`_live_maps`).

    Their update divides by ``H_kk``: a map of 1e-40 made a diffraction of 1e40 and the
    maps, scaled by it in float32, overflowed into NaN (measured with two spare components
    at 20,000 e/pattern). Zeroed, they start afresh (:func:`_reseed_dead`); the loss holds
    because their maps are zero.
    """
    dead = ~_live_maps(h)
    if dead.any():
        S = S.copy()
        S[:, dead] = 0.0
    return S


def _reseed_dead(S: np.ndarray, iteration: int, seed: int) -> np.ndarray:
    """Give an all-zero diffraction a fresh random start (its map is zero, so the loss holds)."""
    dead = S.sum(axis=0) <= 0
    if dead.any():
        rng = np.random.default_rng([seed, iteration])
        fresh = rng.random((S.shape[0], int(dead.sum())))
        S[:, dead] = fresh / fresh.sum(axis=0)
    return S


def decompose(ds: xr.Dataset, n_components: int, **kwargs: Any) -> xr.Dataset:
    """Functional form of :class:`ConstrainedNMF`: fit and return ``result_``."""
    return ConstrainedNMF(n_components, **kwargs).fit(ds).result_
