"""A progress line per NMF iteration: loss, its change, seconds per iteration, time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["IterationProgress"]


class IterationProgress:
    """Callback for :class:`~dask_stemnmf.ConstrainedNMF` that prints a bar to a terminal.

    On a terminal the line is redrawn in place; otherwise (a log file, a scheduled job) a line
    is printed every ``every`` iterations and at the end.

    Parameters
    ----------
    max_iter
        The iteration limit (the time left is an upper bound: the fit stops earlier when the
        loss settles).
    out
        Where to print (default ``sys.stderr``).
    every
        Lines between prints when ``out`` is not a terminal.
    start
        The first iteration (a resumed run).
    """

    def __init__(
        self, max_iter: int, out: TextIO | None = None, every: int = 10, start: int = 0
    ) -> None:
        self.max_iter = max_iter
        self.out = out or sys.stderr
        self.every = every
        self.start = start
        self._t0 = time.perf_counter()
        self._last: float | None = None
        self._tty = bool(getattr(self.out, "isatty", lambda: False)())

    def line(self, iteration: int, loss: float) -> str:
        """Return the text shown after ``iteration`` (0-based) with relative loss ``loss``."""
        done = iteration + 1
        elapsed = time.perf_counter() - self._t0
        rate = elapsed / max(done - self.start, 1)
        left = rate * (self.max_iter - done)
        width = 24
        filled = int(width * done / max(self.max_iter, 1))
        bar = "#" * filled + "-" * (width - filled)
        change = (
            "" if self._last is None else f" ({(loss - self._last) / max(self._last, 1e-300):+.2%})"
        )
        return (
            f"NMF [{bar}] {done}/{self.max_iter}  loss {loss:.5f}{change}  "
            f"{rate:.2f} s/it  at most {_duration(left)} left"
        )

    def __call__(self, iteration: int, loss: float) -> None:
        """Print the progress after ``iteration``."""
        text = self.line(iteration, loss)
        self._last = loss
        if self._tty:
            print("\r" + text, end="", file=self.out, flush=True)
        elif (iteration + 1) % self.every == 0 or iteration == 0:
            print(text, file=self.out, flush=True)

    def close(self) -> None:
        """End the in-place line."""
        if self._tty:
            print(file=self.out, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
