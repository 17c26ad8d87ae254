"""The whole job: decomposition, classification and one result store (``stemnmf run``).

The input is opened read-only. The result is written to a hidden temporary store beside the
output and renamed into place when complete: first the decomposition as soon as the fit ends
(``classification="pending"``), then with the classification (``"done"``), or, should the
classification fail, with the reason (``"failed"``); a finished fit is never thrown away.
Every ``checkpoint_every`` iterations the fit's state goes to a hidden
``.NAME.checkpoint.npz`` beside the output (atomically), so that ``resume=True`` continues a
killed run and ends with the same result as an uninterrupted one. A re-run with the same
configuration and input finds the result up to date and skips the work unless ``force=True``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ._fsutil import atomic_output
from ._kernels.masks import disc_mask, find_bright_field_disc
from .classify import classify
from .config import config_hash, input_fingerprint
from .data import _clean_attrs, open_4dstem
from .errors import InputError, OutputExistsError, StemNMFError, StemNMFWarning
from .nmf import ConstrainedNMF, decompose, pca
from .nmf.versions import versions
from .progress import IterationProgress

__all__ = [
    "CLASSIFIED", "FAILED", "PENDING", "Checked", "JobOutcome", "checkpoint_path", "open_result",
    "preflight", "run_job",
]  # fmt: skip

#: The result's ``classification`` attribute: classified, not yet, or failed (see the note).
CLASSIFIED, PENDING, FAILED = "done", "pending", "failed"


@dataclass
class JobOutcome:
    """What a job did: ``"done"`` or ``"up to date"``, the output, and a summary."""

    status: str
    output: Path
    summary: dict[str, Any]


def checkpoint_path(output: str | os.PathLike[str]) -> Path:
    """Return the hidden checkpoint file of an output store."""
    out = Path(output)
    return out.parent / f".{out.name}.checkpoint.npz"


def _existing(output: Path) -> dict[str, Any] | None:
    if not output.exists():
        return None
    try:
        import zarr

        return dict(zarr.open_group(output, mode="r").attrs)
    except Exception:  # not a result store: treated as a foreign file
        return {}


def _save_checkpoint(path: Path, state: dict[str, Any], tag: dict[str, str]) -> None:
    tmp = path.with_name(path.name + f".partial-{os.getpid()}.npz")
    np.savez(
        tmp,
        C=np.asarray(state["C"].compute() if hasattr(state["C"], "compute") else state["C"]),
        S=state["S"],
        scale=state["scale"],
        losses=np.asarray(state["losses"], dtype=np.float64),
        scalars=np.array([
            state["iteration"], state["loss"], state["fraction"], state["n_dips"],
            -1 if state.get("full_since") is None else state["full_since"],
            state.get("fill_start", 0), state.get("drift_since", -1),
            state.get("drift", np.inf),
        ]),
        merges=np.asarray(state.get("merges", []), dtype=np.int64),
        drift_ref=np.zeros((0, 0)) if state.get("drift_ref") is None else state["drift_ref"],
        tag=np.array(json.dumps(tag)),
    )
    os.replace(tmp, path)


def _load_checkpoint(path: Path, tag: dict[str, str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with np.load(path) as f:
        if json.loads(str(f["tag"])) != tag:
            return None
        if f["scalars"].size != 8 or "drift_ref" not in f.files:
            return None  # an older checkpoint: start afresh
        it, loss, fraction, n_dips, full_since, fill_start, drift_since, drift = f["scalars"]
        ref = f["drift_ref"]
        return {
            "C": f["C"], "S": f["S"], "scale": f["scale"], "losses": list(f["losses"]),
            "iteration": int(it), "loss": float(loss), "fraction": float(fraction),
            "n_dips": int(n_dips), "full_since": None if full_since < 0 else int(full_since),
            "fill_start": int(fill_start), "merges": [int(v) for v in f["merges"]],
            "drift_ref": ref if ref.size else None, "drift_since": int(drift_since),
            "drift": float(drift),
        }  # fmt: skip


def _dark_field(ds: xr.Dataset, disc: dict[str, Any] | None) -> tuple[da.Array, da.Array]:
    """Lazy virtual dark-field image (counts outside the bright-field disc) and mean pattern."""
    data = ds["intensity"].data
    mean = data.mean(axis=(0, 1), dtype=np.float64)
    if disc:
        cy, cx = disc["centre_px"]
        outside = ~disc_mask(data.shape[2:], cy, cx, float(disc["radius_px"]))
        vdf = da.where(outside, data.astype(np.float32), 0).sum(axis=(2, 3))
    else:
        vdf = data.astype(np.float32).sum(axis=(2, 3))
    return vdf, mean


def _machine_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def _check_chunk_memory(ds: xr.Dataset, chunks: Any) -> None:
    """Refuse scan chunks whose float32 copy would not fit in half this machine's memory."""
    if chunks == "auto":
        cy, cx = ds["intensity"].data.chunksize[:2]
    else:
        cy, cx = (min(int(c), n) for c, n in zip(chunks, ds["intensity"].shape[:2], strict=True))
    pattern = int(np.prod(ds["intensity"].shape[2:]))
    need = cy * cx * pattern * 4
    memory = _machine_memory()
    if memory and need > memory // 2:
        raise InputError(
            f"a chunk of {cy} x {cx} positions holds {need / 2**30:.1f} GiB as float32, more "
            f"than half this machine's {memory / 2**30:.1f} GiB; choose smaller chunks "
            "(--chunks, job.chunks)"
        )


@dataclass
class Checked:
    """A job checked by :func:`preflight`: the opened scan, its tag, and how far it got.

    ``done`` is the outcome when the output is up to date; ``pending`` is true when the
    output holds this job's decomposition and only the classification is left to do (a run
    killed after its fit).
    """

    ds: xr.Dataset
    tag: dict[str, str]
    done: JobOutcome | None
    pending: bool = False


def preflight(config: dict[str, Any], *, force: bool = False) -> Checked:
    """Check a job before any work: the input opens, the output may be written.

    A scan without calibrations (``scan_step_nm`` NaN, coordinates in ``px``) is not refused:
    the fit falls back to what the data say, and lengths are reported in pixels.

    Returns
    -------
    Checked
        The opened scan (lazy), the configuration hash and input fingerprint, and ``done``:
        ``"up to date"`` when the output was made with this configuration and input (and
        not ``force``), else ``None``; ``pending`` when the output holds this job's
        decomposition but not yet its classification.
    """
    job = config["job"]
    if not job["input"] or not job["output"]:
        raise InputError("the job needs an input scan and an output path (-o RESULT.zarr)")
    source, output = Path(job["input"]), Path(job["output"])
    if output.is_symlink() or checkpoint_path(output).is_symlink():
        raise InputError(
            f"{output} is a symbolic link; writing through it would land elsewhere: "
            "give the real path"
        )
    if output.resolve() == source.resolve() or source.resolve() in output.resolve().parents:
        raise InputError("the output path is the input scan or inside it; choose another output")
    if not output.parent.is_dir():
        raise InputError(f"output directory {output.parent} does not exist; create it first")
    ds = open_4dstem(source, missing_chunks=job["missing_chunks"])
    _check_chunk_memory(ds, job["chunks"])
    k = int(config["nmf"]["n_components"])
    positions = ds.sizes["scan_y"] * ds.sizes["scan_x"]
    pixels = int(np.prod(ds["intensity"].shape[2:]))
    if k > min(positions, pixels):
        raise InputError(
            f"n_components={k} exceeds the data's size ({positions} positions x {pixels} "
            f"pixels); use at most {min(positions, pixels)}"
        )
    tag = {"config_hash": config_hash(config), "input": input_fingerprint(source)}
    existing = _existing(output)
    if existing is None:
        return Checked(ds, tag, None)
    same = (
        existing.get("config_hash") == tag["config_hash"]
        and existing.get("input_fingerprint") == tag["input"]
    )
    if same and not force:
        if existing.get("classification") == PENDING:
            return Checked(ds, tag, None, pending=True)
        summary = json.loads(existing.get("summary", "{}"))
        return Checked(ds, tag, JobOutcome("up to date", output, summary))
    if not force:
        raise OutputExistsError(
            f"{output} exists and was made with another configuration or input; "
            "pass --force to replace it"
        )
    return Checked(ds, tag, None)


def _fit(
    ds: xr.Dataset,
    config: dict[str, Any],
    state: dict[str, Any] | None,
    checkpoint: Any,
    out: TextIO,
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Fit the scan; return the decomposition (with the baselines) and the fit's attrs."""
    job, nmf_kw = config["job"], dict(config["nmf"])
    k = nmf_kw.pop("n_components")
    progress = IterationProgress(
        nmf_kw["max_iter"], out=out, start=0 if state is None else state["iteration"]
    )
    model = ConstrainedNMF(
        k, callback=progress, checkpoint=checkpoint, checkpoint_every=job["checkpoint_every"],
        **nmf_kw,
    )  # fmt: skip
    try:
        model.fit(ds, resume=state)
    finally:
        progress.close()
    result = model.result_
    disc = (result.attrs.get("masks") or {}).get("bright_field_disc")
    vdf, mean = dask.compute(*_dark_field(ds, disc))  # one pass over the data for both
    decomposed = result.copy()
    decomposed.attrs = {}
    decomposed["virtual_dark_field"] = (("scan_y", "scan_x"), vdf)
    decomposed["mean_pattern"] = (result["diffractions"].dims[1:], mean)
    if job["compare"]:
        for name, res in (
            ("pca", pca(ds, k, random_state=nmf_kw["random_state"])),
            ("primitive", decompose(
                ds, k, **{**nmf_kw, "map_resolution_nm": None, "diffraction_continuity": False,
                          "merge_threshold": None, "separate_halo": False}
            )),
        ):  # fmt: skip
            for var in ("maps", "diffractions"):
                decomposed[f"{name}_{var}"] = res[var]
    if disc is None and mean.ndim == 2:
        try:
            cy, cx, radius = find_bright_field_disc(mean)
            disc = {"centre_px": [cy, cx], "radius_px": radius}
        except (ValueError, FloatingPointError):  # no disc to find (e.g. an all-zero mean)
            disc = None
    nmf_attrs = dict(result.attrs)
    nmf_attrs["pipeline_bright_field_disc"] = disc
    return decomposed.compute(), nmf_attrs


def _one_line(exc: BaseException) -> str:
    """Return an exception as one line: its message, named by its type unless it is ours."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else "no message"
    return text if isinstance(exc, StemNMFError) else f"{type(exc).__name__}: {text}"


def _classified(
    decomposed: xr.Dataset, cls_kw: dict[str, Any], output: Path
) -> tuple[xr.Dataset, dict[str, Any], str]:
    """Classify a decomposition; on any failure keep the decomposition and say why.

    Returns
    -------
    dataset : xarray.Dataset
        The decomposition with the classification's variables (or alone, on failure).
    found : dict
        For the summary: ``classes``, ``precipitates``, ``kinds``; or ``note`` on failure.
    status : str
        :data:`CLASSIFIED` or :data:`FAILED`.
    """
    components = decomposed.copy()  # as the engine gave it: its attrs, fit_mask, sigma, ...
    components.attrs = json.loads(decomposed.attrs.get("nmf", "{}"))
    components.attrs.setdefault("probe_fwhm_nm", decomposed.attrs.get("probe_fwhm_nm"))
    try:
        classes = classify(components, **cls_kw)
    except Exception as exc:  # a finished fit is never thrown away by its classification
        note = f"classification failed: {_one_line(exc)}; the decomposition is in {output}"
        warnings.warn(note, StemNMFWarning, stacklevel=3)
        return decomposed, {"note": note}, FAILED
    sig = list(decomposed["diffractions"].dims[1:])
    merged = xr.merge(
        [decomposed, classes.drop_vars(["scan_y", "scan_x", *sig])],
        compat="override", combine_attrs="override",
    )  # fmt: skip
    # class_label says the kind (-1 amorphous, -2 direct beam); zarr 3 has no stable string type
    merged = merged.drop_vars("kind")
    kinds = classes["kind"].values
    found = {
        "classes": int(classes.sizes["class"]),
        "classes_with_precipitates": int(np.unique(classes["precipitate_class"].values).size),
        "precipitates": int(classes.sizes["precipitate"]),
        "kinds": {str(v): int((kinds == v).sum()) for v in sorted(set(kinds))},
    }
    merged.attrs = {**decomposed.attrs, "classify": json.dumps(_clean_attrs(classes.attrs))}
    return merged, found, CLASSIFIED


def _write(ds: xr.Dataset, output: Path) -> None:
    """Write a result store atomically (a hidden temporary store renamed into place)."""
    ds = ds.copy()
    ds.attrs = _clean_attrs(ds.attrs)
    for var in ds.variables.values():
        var.attrs = _clean_attrs(var.attrs)
        var.encoding = {}
    with atomic_output(output, overwrite=True) as tmp:
        ds.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False)


def run_job(
    config: dict[str, Any],
    *,
    force: bool = False,
    resume: bool = False,
    log: TextIO | None = None,
    checked: Checked | None = None,
) -> JobOutcome:
    """Run decomposition and classification on a scan and write one result store.

    The decomposition is written to the output (atomically) as soon as the fit ends, with
    the attribute ``classification="pending"``; the classification is then added and the
    store rewritten with ``classification="done"``. Should the classification fail (any
    exception), the store keeps the decomposition, says ``classification="failed"`` with the
    reason in ``classification_note``, and the reason is issued as a
    :class:`~dask_stemnmf.errors.StemNMFWarning`: a finished fit is never thrown away. A run
    killed during the classification leaves the decomposition, and the next run with the
    same configuration and input only classifies it.

    Parameters
    ----------
    config
        A resolved configuration (:func:`dask_stemnmf.config.resolve_config`) with
        ``job.input`` and ``job.output`` set.
    force
        Redo the work even when the output is up to date, and replace an output made with a
        different configuration.
    resume
        Continue from the output's checkpoint when there is one for this configuration
        and input.
    log
        Where to print progress (default ``sys.stderr``).
    checked
        The job's :func:`preflight`, when the caller already ran it.

    Returns
    -------
    JobOutcome
        ``status`` ``"done"`` or ``"up to date"``; the summary holds ``classification``
        (``"done"`` or ``"failed"``) and, on failure, the ``note``.
    """
    out = log or sys.stderr
    job = config["job"]
    checked = checked or preflight(config, force=force)
    if checked.done is not None:
        return checked.done
    source, output = Path(job["input"]), Path(job["output"])
    ds, tag = checked.ds, checked.tag
    start = time.perf_counter()
    if checked.pending:
        print(f"{output} holds this job's decomposition: classifying it", file=out)
        decomposed = open_result(output).load()
        summary = json.loads(decomposed.attrs.get("summary", "{}"))
    else:
        if job["chunks"] != "auto":
            ds = ds.chunk({"scan_y": job["chunks"][0], "scan_x": job["chunks"][1]})
        ckpt = checkpoint_path(output)
        state = _load_checkpoint(ckpt, tag) if resume else None
        if resume and state is None:
            print("no checkpoint for this configuration and input: starting afresh", file=out)
        elif state is not None:
            print(f"resuming from the checkpoint at iteration {state['iteration']}", file=out)
        decomposed, nmf_attrs = _fit(
            ds, config, state, lambda s: _save_checkpoint(ckpt, s, tag), out
        )
        disc = nmf_attrs.pop("pipeline_bright_field_disc")
        summary = {
            "components": int(decomposed.sizes["component"]),
            "iterations": int(nmf_attrs["n_iter"]),
            "converged": bool(nmf_attrs["converged"]),
            "final_loss": float(decomposed["loss"].values[-1]),
        }
        decomposed.attrs = {
            "config": json.dumps(config, sort_keys=True),
            "config_hash": tag["config_hash"],
            "input_fingerprint": tag["input"],
            "input": str(source),
            "versions": versions(),
            "summary": json.dumps({**summary, "classification": PENDING}),
            "nmf": json.dumps(_clean_attrs(nmf_attrs)),
            "bright_field_disc": disc,
            "scan_step_nm": float(ds.attrs.get("scan_step_nm", float("nan"))),
            "probe_fwhm_nm": float(ds.attrs.get("probe_fwhm_nm", float("nan"))),
            "classification": PENDING,
            "writer": "dask_stemnmf stemnmf run",
        }
        _write(decomposed, output)  # the fit is safe from here on
        ckpt.unlink(missing_ok=True)
    final, found, status = _classified(decomposed, dict(config["classify"]), output)
    summary = {**summary, **found, "classification": status}
    summary["seconds"] = round(time.perf_counter() - start, 2)
    final.attrs["summary"] = json.dumps(summary)
    final.attrs["classification"] = status
    if status == FAILED:
        final.attrs["classification_note"] = found["note"]
    _write(final, output)
    return JobOutcome("done", output, summary)


def open_result(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a result store written by :func:`run_job` (lazily, read-only)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} not found; run `stemnmf run SCAN.zarr -o {p}` first")
    try:
        res = xr.open_zarr(p, consolidated=False)
    except Exception as exc:
        raise InputError(f"{p} cannot be read as a result store ({exc})") from None
    if "config_hash" not in res.attrs:
        raise InputError(f"{p} is not a result of `stemnmf run`")
    return res
