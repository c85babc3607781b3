"""ONNX Runtime sessions for the exported towers, opened from a graph ONNX Runtime has
already optimised for this CPU when there is one.

Creating a session optimises the graph first (fusions, constant folding, layouts): for
ViT-B-32's int8 text tower about 130 ms of a 220 ms session load, paid by every one-shot
query. The first session of a file on a machine saves its optimised graph beside the file
(``text.int8.opt-KEY.onnx``); later ones load that with optimisation off (90 ms), and
compute the same numbers, since the saved graph is the one the first session ran.

ONNX Runtime warns that a fully optimised graph may hold layouts for the CPU it was made
on, so ``KEY`` names this ONNX Runtime version, this CPU (model and feature flags) and
the source file's size and modification time: a cache shared by several machines keeps
one graph per kind of CPU, and a re-made export never meets a stale graph. Any failure
to save or to load one falls back to the source file, as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def open_session(path: str, threads: int) -> Any:
    """A CPU session of ``path`` with ``threads`` intra-op threads that sleep when idle
    (spinning threads steal the decoders' cores, and on a busy machine each other's)."""
    import onnxruntime as ort

    try:
        optimised = optimised_path(Path(path), ort.__version__)
    except OSError:  # the source cannot be seen: let ONNX Runtime say why
        optimised = None
    if optimised is not None and optimised.is_file():
        options = _options(ort, threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(optimised), options, providers=["CPUExecutionProvider"])
        except Exception:  # damaged or foreign: the source, optimised again, decides
            log.debug("cannot load %s; optimising %s again", optimised, path, exc_info=True)
    if optimised is not None:
        partial = optimised.with_name(f"{optimised.name}.{os.getpid()}.part")
        options = _options(ort, threads)
        options.optimized_model_filepath = str(partial)
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception:  # a read-only cache, a full disk: open it as it is
            log.debug("cannot save the optimised graph of %s", path, exc_info=True)
            partial.unlink(missing_ok=True)
        else:
            _keep(partial, optimised)
            return session
    return ort.InferenceSession(path, _options(ort, threads), providers=["CPUExecutionProvider"])


def _options(ort: Any, threads: int) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures come back as exceptions; its log is noise
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def optimised_path(source: Path, ort_version: str) -> Path:
    """Where this machine's optimised graph of ``source`` is kept."""
    stat = source.stat()
    key = hashlib.sha256(
        f"{ort_version}|{cpu_identity()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    ).hexdigest()[:16]
    return source.with_name(f"{source.stem}.opt-{key}.onnx")


@lru_cache(maxsize=1)
def cpu_identity() -> str:
    """This CPU's model and feature flags (what ONNX Runtime's kernels and layouts are
    chosen by), or the platform's processor name where /proc/cpuinfo is not there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            text = info.read(1 << 16)
    except OSError:
        return f"{platform.machine()}|{platform.processor()}"
    lines = text.split("\n\n", 1)[0].splitlines()  # the first processor's block
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    return "|".join(ln.strip() for ln in lines if ln.split(":", 1)[0].strip() in wanted)


def _keep(partial: Path, optimised: Path) -> None:
    """Move a freshly saved graph into place (atomically: a concurrent session sees the
    whole file or none) and drop this source's graphs that are older than it."""
    try:
        if not partial.is_file():
            return
        os.replace(partial, optimised)
        stem = optimised.name.split(".opt-", 1)[0]
        source_mtime = optimised.with_name(f"{stem}.onnx").stat().st_mtime_ns
        for old in optimised.parent.glob(f"{stem}.opt-*.onnx"):
            if old != optimised and old.stat().st_mtime_ns < source_mtime:
                old.unlink(missing_ok=True)
    except OSError:
        log.debug("cannot keep %s", optimised, exc_info=True)
        partial.unlink(missing_ok=True)
