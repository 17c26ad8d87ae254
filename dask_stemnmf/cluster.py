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
from typing import TextIO

import dask

from .errors import InputError

__all__ = ["SCHEDULER_CHOICES", "scheduler"]

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
    from distributed import Client, LocalCluster

    if spec == "local":
        workers = n_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            memory_limit=memory_limit or "auto",
            silence_logs=logging.ERROR,
        )
        try:
            with Client(cluster) as client:
                print(f"dashboard: {client.dashboard_link}", file=out, flush=True)
                yield f"local cluster of {workers} worker processes"
        finally:
            cluster.close()
        return
    address = spec if "://" in spec else f"tcp://{spec}"
    if ":" not in address.split("://", 1)[1]:
        raise InputError(
            f"--scheduler {spec!r} is neither one of {SCHEDULER_CHOICES} nor an address "
            "like tcp://HOST:8786"
        )
    try:
        client = Client(address, timeout="20s")
    except OSError as exc:
        raise InputError(
            f"cannot reach the scheduler at {address} ({exc}); is it running?"
        ) from None
    with client:
        print(f"dashboard: {client.dashboard_link}", file=out, flush=True)
        yield f"scheduler at {address}"


@contextmanager
def _progress(show: bool, out: TextIO) -> Iterator[None]:
    if not show:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(out=out, minimum=1.0):
        yield
