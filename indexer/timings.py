"""Where an index run's time went, stage by stage.

Decoding (a thread pool) and the model (the encode stage's threads) overlap, so their
wall times cannot simply be added up. The run's own thread drives everything, and what
it waits on is what bounds the run: each stage's wall seconds (``wall``) are the time
that thread spent in it, so they add up to the run's wall time (``other`` is the rest:
bookkeeping, the writer lock). ``decode`` is time spent waiting for decoded images (the
decoders are behind), ``model`` time spent waiting for the encode stage (the model is
behind). Beside them, CPU seconds (``cpu``): the decode threads' own CPU time, and the
rest of the process's CPU time during the pipeline (the model's threads, ONNX Runtime's
or torch's own included, plus the run's thread), which on several cores can exceed the
wall time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

STAGES = ("load", "scan", "decode", "model", "write")
T = TypeVar("T")
R = TypeVar("R")


class StageClock:
    """Wall seconds per stage on the run's thread, and CPU seconds of the decoders."""

    def __init__(self) -> None:
        self.wall = dict.fromkeys(STAGES, 0.0)
        self._decode_cpu: list[float] = []
        self._pipeline_cpu = 0.0
        self._cpu_started: float | None = None
        self.export = 0.0  # of the load stage: a one-time ONNX export of the model

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - started

    def cpu_timed(self, fn: Callable[[T], R]) -> Callable[[T], R]:
        """``fn`` counting the CPU time of the thread that runs it as decoding."""

        def timed(arg: T) -> R:
            started = time.thread_time()
            try:
                return fn(arg)
            finally:
                self._decode_cpu.append(time.thread_time() - started)  # atomic under the GIL

        return timed

    def pipeline_started(self) -> None:
        self._cpu_started = time.process_time()

    def pipeline_stopped(self) -> None:
        if self._cpu_started is not None:
            self._pipeline_cpu += time.process_time() - self._cpu_started
            self._cpu_started = None

    def as_dict(self, total_seconds: float) -> dict[str, dict[str, float]]:
        """``{"wall": {stage: s, ..., "other": s}, "cpu": {"decode": s, "model": s}}``."""
        wall = {k: round(v, 3) for k, v in self.wall.items()}
        wall["other"] = round(max(0.0, total_seconds - sum(self.wall.values())), 3)
        decode = sum(self._decode_cpu)
        out = {
            "wall": wall,
            "cpu": {"decode": round(decode, 3), "model": round(max(0.0, self._pipeline_cpu - decode), 3)},
        }
        if self.export:
            out["once"] = {"onnx_export": round(self.export, 3)}
        return out


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included),
    from ``/proc``; ``None`` where that is not available."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started)


def with_start(timings: dict[str, dict[str, float]], run_seconds: float) -> dict[str, dict[str, float]]:
    """``timings`` with ``wall["start"]``: this process's life before the run began
    (interpreter, imports, settings, opening the catalog), for a command that ran one
    index run; unchanged where the process's age is unknown."""
    age = process_age()
    if age is None or "wall" not in timings:
        return timings
    wall = {"start": round(max(0.0, age - run_seconds), 3), **timings["wall"]}
    return {**timings, "wall": wall}


def describe(timings: dict[str, dict[str, float]]) -> str:
    """One line for a person: start-up (imports + model load), then each stage."""
    wall, cpu = timings.get("wall", {}), timings.get("cpu", {})
    if not wall:
        return ""
    start = wall.get("start")
    load = f"model load {wall['load']:.1f}s"
    export = timings.get("once", {}).get("onnx_export")
    if export:
        load += f" with a one-time ONNX export {export:.1f}s"
    head = load
    if start is not None:
        head = f"start-up {start + wall['load']:.1f}s (process start {start:.1f}s, {load})"
    stages = ", ".join(f"{k} {wall[k]:.1f}s" for k in ("scan", "decode", "model", "write", "other"))
    busy = f"; CPU busy: decoding {cpu['decode']:.1f}s, model {cpu['model']:.1f}s" if cpu else ""
    return f"time: {head}, {stages} (wall, waiting on each){busy}"
