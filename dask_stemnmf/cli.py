"""The ``stemnmf`` command.

Bad input ends with one line ``error: ...`` on stderr and exit status 2, and writes nothing;
notes about the data (calibrations, bad values, rechunking) are printed as ``note: ...``.
``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._version import __version__
from .cluster import SCHEDULER_CHOICES
from .errors import InputError, StemNMFError, StemNMFWarning

__all__ = ["main"]

EXIT_BAD_INPUT = 2


def _pair(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not of the form NxM, e.g. 32x32") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be two positive sizes, e.g. 32x32")
    return parts[0], parts[1]


def _chunks(text: str) -> Any:
    return "auto" if text == "auto" else _pair(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _engine_default(name: str) -> Any:
    """Return a :class:`~dask_stemnmf.ConstrainedNMF` default, for the help."""
    from .config import SCHEMA

    return SCHEMA["nmf"][name][0]


def _scheduler_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--scheduler",
        default=default,
        metavar="SPEC",
        help=f"{' | '.join(SCHEDULER_CHOICES)} | tcp://HOST:PORT (default: {default})",
    )
    p.add_argument("--workers", type=int, default=None, help="worker processes of 'local'")


def _simulate_args(p: argparse.ArgumentParser, scan: str, detector: str, precipitates: int) -> None:
    p.add_argument("--scan", type=_pair, default=_pair(scan), help=f"scan size (default {scan})")
    p.add_argument(
        "--detector",
        type=_pair,
        default=_pair(detector),
        help=f"detector size (default {detector})",
    )
    p.add_argument("--precipitates", type=int, default=precipitates, help=f"default {precipitates}")
    p.add_argument("--phases", type=int, default=3, help="crystalline phases (default 3)")
    p.add_argument(
        "--dose", type=_positive, default=5000.0, help="electrons per pattern (default 5000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunks", type=_pair, default=(32, 32), help="scan chunks (default 32x32)")
    p.add_argument(
        "--dark-noise", type=float, default=0.0, help="detector noise, counts (default 0)"
    )
    p.add_argument("--no-noise", action="store_true", help="store the float32 expectation")
    p.add_argument("--scan-step", type=_positive, default=0.3, help="nm (default 0.3)")
    p.add_argument("--beam-energy", type=_positive, default=200.0, help="keV (default 200)")
    p.add_argument(
        "--convergence", type=_positive, default=1.5, help="semi-angle, mrad (default 1.5)"
    )
    p.add_argument("--probe-fwhm", type=_positive, default=None, help="nm (default: Airy probe)")


class _Parser(argparse.ArgumentParser):
    """Argument parser whose usage errors are one line and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="stemnmf",
        description="Constrained NMF of 4D-STEM scans on Dask: data, simulation, analysis.",
    )
    parser.add_argument("--version", action="version", version=f"dask_stemnmf {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="write a synthetic scan with ground truth")
    p.add_argument("output", metavar="OUT.zarr")
    _simulate_args(p, "128x128", "128x128", 12)
    p.add_argument("--overwrite", action="store_true")
    _scheduler_arg(p, "local")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("info", help="describe a stored scan and check it")
    p.add_argument("store", metavar="SCAN.zarr")
    p.add_argument("--quick", action="store_true", help="skip the pass over the values")
    p.add_argument("--json", action="store_true", help="print JSON")
    _scheduler_arg(p, "threads")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="stream a scan from another format into zarr")
    p.add_argument("input", metavar="INPUT")
    p.add_argument("output", metavar="OUT.zarr")
    p.add_argument("--dataset", default=None, help="HDF5 dataset path")
    p.add_argument("--chunks", type=_chunks, default="auto", help="scan chunks, NxM or auto")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--scan-step", type=_positive, default=None, metavar="NM",
        help="scan step in nm, for files without it (e.g. Merlin .mib); without it the "
        "scan is stored in px and the maps' resolution is measured in px",
    )  # fmt: skip
    p.add_argument(
        "--k-step", type=_positive, default=None, metavar="VALUE",
        help="detector pixel size in --k-units, for files without it (else stored in px)",
    )  # fmt: skip
    p.add_argument("--k-units", choices=("1/nm", "mrad"), default="1/nm")
    p.add_argument("--energy-step", type=_positive, default=None, help="eV (spectrum images)")
    p.add_argument("--energy-offset", type=float, default=0.0, help="eV (spectrum images)")
    p.add_argument(
        "--beam-energy", type=_positive, default=None, metavar="KEV",
        help="beam energy in keV (with --convergence: the probe's resolution limit)",
    )  # fmt: skip
    p.add_argument(
        "--convergence", type=_positive, default=None, metavar="MRAD",
        help="probe convergence semi-angle in mrad (with --beam-energy)",
    )  # fmt: skip
    _scheduler_arg(p, "threads")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("run", help="decompose and classify a scan into one result store")
    p.add_argument("input", metavar="SCAN.zarr", nargs="?", default=None)
    p.add_argument("-o", "--output", metavar="RESULT.zarr", default=None)
    p.add_argument("-k", "--components", type=int, default=None, help="NMF components")
    p.add_argument("--config", metavar="JOB.yaml", default=None, help="job configuration")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="CLUSTER.yaml", default=None, help="cluster file")
    where.add_argument(
        "--scheduler", metavar="SPEC", default=None,
        help=f"{' | '.join(SCHEDULER_CHOICES)} | tcp://HOST:PORT (default: the config's, local)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="worker processes of 'local'")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--force", action="store_true", help="redo or replace an existing result")
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument(
        "--map-resolution", default=None, metavar="RES",
        help="map constraint: 'auto' (the resolution measured from the data), 'probe' (from "
        "the beam energy and convergence), 'none', or a length in nm (default: the job "
        f"file's, else ConstrainedNMF's: {_engine_default('map_resolution_nm')!r})",
    )  # fmt: skip
    p.add_argument(
        "--negative", choices=("clip", "offset", "refuse"), default=None,
        help="negative values (background-subtracted data): clip them to 0 (default), "
        "offset all values, or refuse the scan",
    )  # fmt: skip
    p.add_argument("--no-continuity", action="store_true", help="no diffraction continuity")
    p.add_argument("--compare", action="store_true", help="also PCA and primitive NMF")
    p.add_argument("--chunks", type=_pair, default=None, help="scan chunks, NxM")
    p.add_argument("--checkpoint-every", type=int, default=None, help="iterations")
    p.add_argument(
        "--missing-chunks", choices=("refuse", "mask"), default=None,
        help="a store with missing chunk files: refuse (default) or fit without them",
    )  # fmt: skip
    p.add_argument("--n-classes", type=int, default=None)
    p.add_argument("--distance-threshold", type=float, default=None)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="figures and an HTML page from a result store")
    p.add_argument("result", metavar="RESULT.zarr")
    p.add_argument("-o", "--output", metavar="FOLDER", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="simulate a small scan and run the whole pipeline on it")
    p.add_argument(
        "--out", type=Path, default=Path("stemnmf-demo"), help="folder (default ./stemnmf-demo)"
    )
    _simulate_args(p, "64x64", "64x64", 8)
    p.add_argument("-k", "--components", type=int, default=12, help="NMF components")
    _scheduler_arg(p, "local")
    p.set_defaults(func=_cmd_demo)
    return parser


def _simulate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "seed": args.seed,
        "scan": args.scan,
        "detector": args.detector,
        "precipitates": args.precipitates,
        "phases": args.phases,
        "dose": args.dose,
        "noise": not args.no_noise,
        "dark_noise": args.dark_noise,
        "scan_step_nm": args.scan_step,
        "beam_energy_kev": args.beam_energy,
        "convergence_semiangle_mrad": args.convergence,
        "probe_fwhm_nm": args.probe_fwhm,
        "chunks": args.chunks,
    }


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ._fsutil import check_output_path
    from .cluster import scheduler
    from .simulate import simulate_scan

    check_output_path(args.output, overwrite=args.overwrite)
    start = time.perf_counter()
    with scheduler(args.scheduler, n_workers=args.workers) as where:
        ds = simulate_scan(args.output, overwrite=args.overwrite, **_simulate_kwargs(args))
    shape = " x ".join(str(s) for s in ds["intensity"].shape)
    took = time.perf_counter() - start
    print(f"wrote {args.output}: {shape} {ds['intensity'].dtype} in {took:.1f} s ({where})")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .cluster import scheduler
    from .info import describe, format_description

    with scheduler(args.scheduler, n_workers=args.workers, progress=False):
        info = describe(args.store, check_values=not args.quick)
    print(json.dumps(info, indent=2) if args.json else format_description(info))
    if not info["validates"]:
        problems = "; ".join(n for n in info["notes"] if "NaN" in n)
        raise InputError(f"{args.store} does not validate: {problems}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ._fsutil import check_output_path
    from .cluster import scheduler
    from .convert import Calibration, convert

    check_output_path(args.output, overwrite=args.overwrite)
    cal = Calibration(
        scan_step_nm=args.scan_step,
        k_step=args.k_step,
        k_units=args.k_units,
        energy_step_ev=args.energy_step,
        energy_offset_ev=args.energy_offset,
        beam_energy_kev=args.beam_energy,
        convergence_semiangle_mrad=args.convergence,
    )
    start = time.perf_counter()
    with scheduler(args.scheduler, n_workers=args.workers):
        result = convert(
            args.input, args.output, dataset=args.dataset, chunks=args.chunks,
            overwrite=args.overwrite, calibration=cal,
        )  # fmt: skip
    print(f"wrote {result.output} in {time.perf_counter() - start:.1f} s")
    return 0


def _run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    resolution: Any = args.map_resolution
    if isinstance(resolution, str) and resolution.lower() in ("probe", "auto", "none"):
        resolution = resolution.lower()
    elif resolution is not None:
        try:
            resolution = float(resolution)
        except ValueError:
            raise InputError(
                f"--map-resolution {resolution!r}: give a length in nm, 'auto', 'probe' or 'none'"
            ) from None
        if not resolution > 0:
            raise InputError(f"--map-resolution {args.map_resolution}: a length must be > 0 nm")
    return {
        "job.input": args.input,
        "job.output": args.output,
        "job.compare": True if args.compare else None,
        "job.chunks": list(args.chunks) if args.chunks else None,
        "job.checkpoint_every": args.checkpoint_every,
        "job.missing_chunks": args.missing_chunks,
        "nmf.n_components": args.components,
        "nmf.max_iter": args.max_iter,
        "nmf.map_resolution_nm": resolution,
        "nmf.negative": args.negative,
        "nmf.diffraction_continuity": False if args.no_continuity else None,
        "classify.n_classes": args.n_classes,
        "classify.distance_threshold": args.distance_threshold,
    }


def _where(args: argparse.Namespace, config: dict[str, Any]) -> Any:
    from .cluster import cluster_from_file, scheduler

    if args.cluster:
        return cluster_from_file(args.cluster, log=sys.stderr)
    spec = args.scheduler or config["job"]["cluster"]
    if spec.endswith((".yaml", ".yml")):
        return cluster_from_file(spec, log=sys.stderr)
    return scheduler(spec, n_workers=args.workers, progress=False, log=sys.stderr)


def _print_summary(outcome: Any) -> None:
    s = outcome.summary
    if "classes" in s:
        kinds = ", ".join(f"{v} {k}" for k, v in sorted(s.get("kinds", {}).items()))
        held = s.get("classes_with_precipitates", s.get("classes"))
        classes = f"{s.get('classes')} crystalline classes"
        if held != s.get("classes"):
            classes += f" ({held} holding precipitates)"
        found = (
            f"{s.get('components')} components ({kinds}), {classes}, "
            f"{s.get('precipitates')} precipitates"
        )
    else:
        found = f"{s.get('components')} components, not classified (see the note)"
    print(
        f"{outcome.status}: {outcome.output} - {found}, {s.get('iterations')} iterations, "
        f"loss {s.get('final_loss', float('nan')):.4f}, {s.get('seconds')} s"
    )


def _job_paths(job: dict[str, Any], config_file: Path) -> dict[str, Any]:
    """Resolve a job file's relative paths against its folder; refuse escapes by ``..``."""
    out = dict(job)
    for key in ("input", "output"):
        value = job.get(key)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value)
        if ".." in path.parts:
            raise InputError(
                f"config: job.{key} {value!r} climbs out of the job's folder with '..'; "
                "give an absolute path if you mean elsewhere"
            )
        if not path.is_absolute():
            out[key] = str(config_file.parent / path)
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config, resolve_config
    from .pipeline import preflight, run_job

    given = load_config(args.config) if args.config else None
    if isinstance(given, dict) and isinstance(given.get("job"), dict):
        given = {**given, "job": _job_paths(given["job"], Path(args.config))}
    config = resolve_config(given, _run_overrides(args))
    if not config["job"]["input"] or not config["job"]["output"]:
        raise InputError("give the scan and -o RESULT.zarr (or job.input and job.output)")
    checked = preflight(config, force=args.force)  # before any cluster starts
    outcome = checked.done
    if outcome is None:
        with _where(args, config) as where:
            print(f"running on: {where}", file=sys.stderr)
            outcome = run_job(config, force=args.force, resume=args.resume, checked=checked)
    if outcome.status == "up to date":
        print(
            f"up to date: {outcome.output} was made with this configuration and input; "
            "nothing to do (pass --force to redo)"
        )
        if outcome.summary.get("note"):
            print(f"note: {outcome.summary['note']}", file=sys.stderr)
        return 0
    _print_summary(outcome)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .pipeline import open_result
    from .report import write_report

    page = write_report(open_result(args.result), args.output, overwrite=args.overwrite)
    print(f"report: {page}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .cluster import scheduler
    from .config import resolve_config
    from .pipeline import open_result, run_job
    from .report import write_report
    from .simulate import simulate_scan

    args.out.mkdir(parents=True, exist_ok=True)
    store, result = args.out / "scan.zarr", args.out / "result.zarr"
    start = time.perf_counter()
    with scheduler(args.scheduler, n_workers=args.workers, progress=False) as where:
        print(f"simulating a {args.scan[0]} x {args.scan[1]} scan into {store} ({where})")
        simulate_scan(store, overwrite=True, **_simulate_kwargs(args))
        config = resolve_config(
            {
                "job": {"input": str(store), "output": str(result), "compare": True},
                "nmf": {"n_components": args.components},
            }
        )
        print("decomposing (constrained NMF, PCA and primitive NMF) and classifying")
        outcome = run_job(config, force=True)
    _print_summary(outcome)
    page = write_report(open_result(result), args.out / "report", overwrite=True)
    print(f"report: {page}")
    print(f"demo finished in {time.perf_counter() - start:.1f} s; output in {args.out}/")
    return 0


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command, then print its data notes as ``note:`` lines and other warnings as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StemNMFWarning)
        try:
            return func(args)
        finally:
            # print, never warnings.showwarning: inside this context it appends to `caught`
            _report(list(caught))


def _report(caught: list[warnings.WarningMessage]) -> None:
    seen: set[str] = set()
    for w in caught:
        if issubclass(w.category, StemNMFWarning):
            text = str(w.message).removeprefix("note: ")
            if text not in seen:  # the same note from two steps is printed once
                seen.add(text)
                print(f"note: {text}", file=sys.stderr)
        else:
            print(
                warnings.formatwarning(w.message, w.category, w.filename, w.lineno),
                end="",
                file=sys.stderr,
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``stemnmf`` command; return its exit status.

    Parameters
    ----------
    argv
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for bad input, 1 for an unexpected failure, 130 when interrupted.
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args.func, args)
    except StemNMFError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(
            f"error: unexpected failure ({type(exc).__name__}: {exc}); rerun with --debug "
            "for the traceback and report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
