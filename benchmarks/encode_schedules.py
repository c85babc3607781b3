"""Encode schedules with decoding running: the indexer's pipeline images/s under each.

Runs ``index_paths`` in this process (model loaded once) into a fresh collection per
run, with the encode stage and the decode threads set up one way or another:

* ``2x1``: two single-threaded model streams, each batch split across them (the default);
* ``1x2``: one forward pass on two intra-op threads (a plain model loop's schedule);
* ``2x1-nice``, ``1x2-nice``: the same, with the decode threads at OS priority nice 10,
  so the model never waits for a core while decoding has work.

``--busy`` starts a ``while True: pass`` process beside the runs, a stand-in for other
work keeping one core busy. Rounds alternate the schedules, so all see the same machine
state; the best round of each is kept. ``cpu_ms`` is this process's CPU per image.

    .venv/bin/python -m benchmarks.encode_schedules
    .venv/bin/python -m benchmarks.encode_schedules --busy
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import model_spec, out_dir, print_table, warn_if_busy, write_json
from benchmarks.photos import photo_set

SCHEDULES = {"2x1": (2, 1, 0), "1x2": (1, 2, 0), "2x1-nice": (2, 1, 10), "1x2-nice": (1, 2, 10)}


def run_once(encoder: object, folder: Path, schedule: str, batch_size: int,
             data_dir: Path) -> dict[str, float]:
    """One index run of ``folder`` under ``schedule``: pipeline images/s, CPU ms/image."""
    import clipfind.indexer.run as run
    from clipfind.config import Settings
    from clipfind.indexer.encode import EncodeStage, single_thread_torch
    from clipfind.store.collection import Collection

    streams, threads, nice = SCHEDULES[schedule]

    def decode_thread_init() -> None:
        single_thread_torch()
        if nice:  # this thread only: Linux priorities are per thread (TID)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

    shutil.rmtree(data_dir, ignore_errors=True)
    collection = Collection(Settings(data_dir=data_dir, model=model_spec()))
    saved = run.EncodeStage, run.single_thread_torch
    run.EncodeStage = functools.partial(EncodeStage, streams=streams, threads=threads)
    run.single_thread_torch = decode_thread_init
    try:
        cpu = time.process_time()
        summary = run.index_paths(collection, encoder, [folder], batch_size=batch_size)
        cpu = time.process_time() - cpu
    finally:
        run.EncodeStage, run.single_thread_torch = saved
        collection.close()
    return {"pipeline_ips": round(summary.pipeline_images_per_second, 2),
            "cpu_ms": round(cpu / max(1, summary.encoded) * 1000, 1)}


@contextlib.contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """A process spinning on one core for the duration, when ``on``."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="jpeg12mp")
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--schedules", nargs="*", default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    args = parser.parse_args()

    from clipfind.encoder import ClipEncoder

    folder = photo_set(args.kind, args.count)
    encoder = ClipEncoder(model_spec(), device="cpu", batch_size=args.batch_size)
    encoder.model  # noqa: B018 - load now, not inside a timed run
    load = warn_if_busy()
    work = out_dir("tmp", "encode_schedules")
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in args.schedules}
    with busy_core(args.busy):
        for r in range(args.rounds):
            for schedule in args.schedules:
                runs[schedule].append(run_once(encoder, folder, schedule, args.batch_size, work))
                print(f"round {r + 1}: {schedule} {runs[schedule][-1]}", flush=True)
    rows = [{"schedule": s, **max(runs[s], key=lambda x: x["pipeline_ips"])} for s in runs]
    title = (f"Encode schedules with decoding, {args.count} x {args.kind}, batch "
             f"{args.batch_size}{', one core kept busy' if args.busy else ''} "
             f"(best of {args.rounds})")
    print_table(title, rows, ["schedule", "pipeline_ips", "cpu_ms"])
    write_json("encode_schedules" + ("_busy" if args.busy else ""),
               {"args": vars(args), "other_load": load, "rows": rows, "runs": runs})


if __name__ == "__main__":
    main()
