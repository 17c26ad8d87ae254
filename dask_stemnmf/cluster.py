"""Schedulers for the command line: an embedded local cluster, a remote one, or local threads.

Library functions never start a scheduler: they use the active one. The ``stemnmf`` command
chooses one with ``--scheduler``:

- ``local`` (default for compute-heavy commands): an embedded ``distributed.LocalCluster``
  of worker processes (one thread each, so BLAS and numba do not oversubscribe the cores),
  listening on 127.0.0.1 only; the dashboard link is printed;
- ``threads`` / ``synchronous``: dask's local schedulers, no cluster (tests, debugging,
  I/O-bound conversion);
- ``tcp://HOST:PORT`` (or ``HOST:PORT``): connect to a running scheduler.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import dask

from .errors import InputError

__all__ = ["SCHEDULER_CHOICES", "cluster_from_file", "load_cluster_file", "scheduler"]

SCHEDULER_CHOICES = ("local", "threads", "synchronous")


@contextmanager
def scheduler(
    spec: str = "local",
    *,
    n_workers: int | None = None,
    memory_limit: str | None = None,
    progress: bool = True,
    log: TextIO | None = None,
) -> Iterator[str]:
    """Run the enclosed dask computations on the scheduler named by ``spec``.

    Parameters
    ----------
    spec
        ``"local"``, ``"threads"``, ``"synchronous"`` or a scheduler address.
    n_workers
        Worker processes of the local cluster (default: the number of cores).
    memory_limit
        Memory limit per local worker, e.g. ``"4GiB"`` (default: the machine's memory
        shared between the workers).
    progress
        Show a progress bar for local-scheduler computations (on a TTY).
    log
        Where to print the dashboard link and progress (default ``sys.stdout``).

    Yields
    ------
    str
        A one-line description of the scheduler in use.
    """
    out = log or sys.stdout
    if spec in ("threads", "synchronous"):
        with dask.config.set(scheduler=spec), _progress(progress and out.isatty(), out):
            yield f"dask {spec} scheduler"
        return
    if spec == "local":
        workers = n_workers or os.cpu_count() or 1
        cluster = _local_cluster(workers, memory_limit=memory_limit or "auto")
        with _serving(cluster, out):
            yield f"local cluster of {workers} worker processes"
        return
    address = spec if "://" in spec else f"tcp://{spec}"
    if ":" not in address.split("://", 1)[1]:
        raise InputError(
            f"--scheduler {spec!r} is neither one of {SCHEDULER_CHOICES} nor an address "
            "like tcp://HOST:8786"
        )
    with _connected(address, None, out):
        yield f"scheduler at {address}"


def _local_cluster(
    n_workers: int,
    *,
    threads_per_worker: int = 1,
    memory_limit: Any = "auto",
    dashboard_address: str = "127.0.0.1:0",
) -> Any:
    """Worker processes on this machine, scheduler, workers and dashboard on 127.0.0.1 only."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=dashboard_address,
        memory_limit=memory_limit,
        silence_logs=logging.ERROR,
    )


@contextmanager
def _serving(cluster: Any, out: TextIO) -> Iterator[None]:
    """Attach a client to a cluster we started, print the dashboard, close both after."""
    from distributed import Client

    try:
        with Client(cluster) as client:
            print(f"dashboard: {client.dashboard_link}", file=out, flush=True)
            yield
    finally:
        cluster.close()


@contextmanager
def _connected(address: str, security: Any, out: TextIO) -> Iterator[None]:
    """Connect to a running scheduler; a one-line error when it cannot be reached."""
    from distributed import Client

    try:
        client = Client(address, timeout="20s", security=security)
    except OSError as exc:
        raise InputError(
            f"cannot reach the scheduler at {address} ({exc}); is it running?"
        ) from None
    with client:
        print(f"dashboard: {client.dashboard_link}", file=out, flush=True)
        yield


@contextmanager
def _progress(show: bool, out: TextIO) -> Iterator[None]:
    if not show:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(out=out, minimum=1.0):
        yield


#: Keys each kind of cluster file accepts (besides ``kind``).
CLUSTER_KEYS: dict[str, set[str]] = {
    "local": {"n_workers", "threads_per_worker", "memory_limit", "dashboard_address"},
    "slurm": {"jobs", "options"},
    "pbs": {"jobs", "options"},
    "address": {"address", "security"},
}

#: dask-jobqueue options a job cluster file may set.
JOBQUEUE_OPTIONS = {
    "queue", "account", "project", "cores", "processes", "memory", "walltime",
    "local_directory", "log_directory", "job_extra_directives", "job_script_prologue",
    "interface", "death_timeout", "python", "resource_spec", "scheduler_options",
    "worker_extra_args", "job_cpu", "job_mem",
}  # fmt: skip

SECURITY_KEYS = {"tls_ca_file", "tls_client_cert", "tls_client_key", "require_encryption"}


def load_cluster_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a cluster file of ``cluster_configs/`` (safe YAML loader).

    Parameters
    ----------
    path
        The YAML file: ``kind`` (``local``, ``slurm``, ``pbs`` or ``address``) and the
        options of that kind.

    Returns
    -------
    dict
        The checked mapping.
    """
    from .config import load_config

    spec = load_config(path)
    if not isinstance(spec, dict) or spec.get("kind") not in CLUSTER_KEYS:
        raise InputError(f"cluster file {path}: 'kind' must be one of {', '.join(CLUSTER_KEYS)}")
    kind = spec["kind"]
    unknown = set(spec) - CLUSTER_KEYS[kind] - {"kind"}
    if unknown:
        raise InputError(
            f"cluster file {path}: unknown key {sorted(unknown)[0]!r} for kind {kind!r}; "
            f"known keys: {', '.join(sorted(CLUSTER_KEYS[kind]))}"
        )
    if kind == "local":
        n = spec.get("n_workers", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InputError(f"cluster file {path}: 'n_workers' must be a positive integer")
    if kind in ("slurm", "pbs"):
        jobs = spec.get("jobs", 1)
        if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
            raise InputError(f"cluster file {path}: 'jobs' must be a positive integer")
        options = spec.get("options") or {}
        if not isinstance(options, dict):
            raise InputError(f"cluster file {path}: 'options' must be a mapping")
        bad = set(options) - JOBQUEUE_OPTIONS
        if bad:
            raise InputError(
                f"cluster file {path}: unknown dask-jobqueue option {sorted(bad)[0]!r}; "
                f"known options: {', '.join(sorted(JOBQUEUE_OPTIONS))}"
            )
        for key in ("cores", "memory"):
            if key not in options:
                raise InputError(f"cluster file {path}: options.{key} is required for {kind}")
    if kind == "address":
        address = spec.get("address")
        if not isinstance(address, str) or ":" not in address.split("://", 1)[-1]:
            raise InputError(f"cluster file {path}: 'address' must look like tcp://HOST:8786")
        security = spec.get("security") or {}
        if not isinstance(security, dict) or set(security) - SECURITY_KEYS:
            raise InputError(
                f"cluster file {path}: 'security' takes only {', '.join(sorted(SECURITY_KEYS))}"
            )
    return spec


@contextmanager
def cluster_from_file(path: str | os.PathLike[str], log: TextIO | None = None) -> Iterator[str]:
    """Run the enclosed computations on the cluster a ``cluster_configs/`` file describes.

    Parameters
    ----------
    path
        A cluster file (:func:`load_cluster_file`).
    log
        Where to print the dashboard link (default ``sys.stdout``).

    Yields
    ------
    str
        A one-line description of the cluster.
    """
    spec = load_cluster_file(path)
    out = log or sys.stdout
    kind = spec["kind"]
    if kind == "address":
        sec = {k: v for k, v in (spec.get("security") or {}).items() if v not in (None, False)}
        security = None
        if sec:
            from distributed.security import Security

            security = Security(**sec)
        with _connected(spec["address"], security, out):
            yield f"scheduler at {spec['address']}"
        return
    if kind == "local":
        cluster: Any = _local_cluster(
            spec.get("n_workers", os.cpu_count() or 1),
            threads_per_worker=spec.get("threads_per_worker", 1),
            memory_limit=spec.get("memory_limit", "auto"),
            dashboard_address=str(spec.get("dashboard_address", "127.0.0.1:0")),
        )
        description = f"local cluster from {path}"
    else:
        try:
            import dask_jobqueue
        except ImportError:
            raise InputError(
                f"{kind} clusters need dask-jobqueue: pip install 'dask_stemnmf[hpc]'"
            ) from None
        factory = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
        cluster = factory(**spec.get("options", {}))
        cluster.scale(jobs=spec.get("jobs", 1))
        description = f"{kind} cluster of {spec.get('jobs', 1)} jobs from {path}"
    with _serving(cluster, out):
        yield description
