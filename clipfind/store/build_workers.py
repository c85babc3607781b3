"""The worker processes of a sharded index build and the clock its log reports."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import time

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def worker_pool(workers: int) -> multiprocessing.pool.Pool:
    """``workers`` processes with one BLAS and OpenMP thread each (the variables are set
    only while they start). The pool runs one process a core; a BLAS library's own
    threads in each (numpy's OpenBLAS starts one a core at import) would spin on the
    cores the other workers compute on."""
    saved = {name: os.environ.get(name) for name in THREAD_VARS}
    os.environ.update(dict.fromkeys(THREAD_VARS, "1"))
    try:
        # spawn, not fork: a forked child of a process that ran OpenMP can hang in it
        return multiprocessing.get_context("spawn").Pool(workers)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Clock:
    """Seconds spent in each named step (summed over the chunks, for the build's log)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now

    def add(self, laps: dict[str, float]) -> None:
        for name, seconds in laps.items():
            self.laps[name] = self.laps.get(name, 0.0) + seconds

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.laps.items())
