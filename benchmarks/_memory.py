"""Peak resident memory of a process tree, sampled in a background thread."""

from __future__ import annotations

import threading
import time

import psutil


class TreeMemory:
    """Sample the RSS of a process and all its descendants every ``interval`` seconds.

    Attributes
    ----------
    peak_total
        Largest sum of RSS over the tree, bytes.
    peak_single
        Largest RSS of any single process in the tree, bytes.
    peak_child
        Largest RSS of any descendant (a worker, not the root process), bytes.
    peak_root
        Largest RSS of the root process itself (the driver), bytes.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self.peak_child = 0
        self.peak_root = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.Error:
                        continue
                if rss:
                    self.peak_total = max(self.peak_total, sum(rss))
                    self.peak_single = max(self.peak_single, max(rss))
                    self.peak_child = max(self.peak_child, max(rss[1:], default=0))
                    self.peak_root = max(self.peak_root, rss[0])
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
