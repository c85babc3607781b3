"""Indexing throughput: end-to-end ``clipfind index`` against the model-only ceiling.

The ceiling is the same model (ViT-B-32 architecture, random weights, loaded from the
same local-dir checkpoint) encoding ready tensors at the same batch size in this
process, the faster of two schedules: a plain ``encode_pixels`` loop with torch's
default threads (``default_loop``), and the indexer's own encode stage without any
decoding (one single-threaded stream per core, each batch split across them). ``ratio``
is against the faster one.

Each round measures the ceiling and then one ``clipfind index`` subprocess per photo
set into a fresh collection, so both see the same machine state; the best round of
each is kept (other work on a shared machine only ever slows a run down).

``pipeline`` images/s covers decoding + encoding + writing (what a big folder sees);
``command`` images/s divides by the whole command's wall time, start-up and model
loading included. Files are in the page cache (generated just before).

What bounds the ratio: every image costs the model ``model_ms`` of CPU (the ceiling's
CPU time per image) and the indexer ``prepare_ms`` more (read + hash + decode +
preprocess, timed on one thread in this run), all on the same cores. So on a CPU the
pipeline can reach at most ``bound = model_ms / (model_ms + prepare_ms)`` of the
ceiling, however well it overlaps decoding with encoding.

    .venv/bin/python -m benchmarks.indexing                  # 12 MP JPEG, PNG, small JPEG
    .venv/bin/python -m benchmarks.indexing --kinds jpeg12mp --count 192 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import (
    model_spec,
    out_dir,
    print_table,
    warn_if_busy,
    write_json,
)
from benchmarks.photos import folder_stats, photo_set

CLIPFIND = Path(sys.executable).with_name("clipfind")


def ceilings(spec: str, batch_size: int, count: int) -> dict[str, float]:
    """Images/s of the model alone on ready tensors (``count`` images, ``batch_size``),
    scheduled two ways: ``encode_pixels`` with torch's default threads (a plain model
    loop), and the indexer's encode stage (one single-threaded stream per core); with
    the process's CPU milliseconds per image of each (``*_cpu_ms``)."""
    import torch

    from clipfind.indexer.encode import EncodeStage

    encoder = _encoder(spec, batch_size)
    pixels = torch.randn(count, 3, encoder.image_size, encoder.image_size)
    encoder.encode_pixels(pixels[:batch_size])  # warm-up: first-call allocations
    default, default_cpu = _timed(lambda: encoder.encode_pixels(pixels), count)

    class Ready:  # what the stage takes: objects with .pixels
        def __init__(self, t: torch.Tensor) -> None:
            self.pixels = t

    items = [Ready(t) for t in pixels]
    with EncodeStage(encoder) as stage:
        stage.submit(items[:batch_size])
        stage.drain()  # warm-up of the stream threads

        def run() -> None:
            for start in range(0, count, batch_size):
                stage.submit(items[start : start + batch_size])
            stage.drain()

        streams, streams_cpu = _timed(run, count)
    return {"default": default, "streams": streams,
            "default_cpu_ms": default_cpu, "streams_cpu_ms": streams_cpu}


def _timed(fn: Callable[[], object], count: int) -> tuple[float, float]:
    """(images/s, process CPU ms per image) of one call of ``fn`` over ``count`` images."""
    cpu, started = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return count / wall, cpu / count * 1000


def prepare_cpu_ms(folder: Path, spec: str, batch_size: int, n: int = 24) -> tuple[float, float]:
    """CPU milliseconds per image of what the indexer does before the model: read, hash,
    decode (draft mode) and preprocess, on one thread as the decode workers run it; and
    of the decoding alone."""
    import torch

    from clipfind.imageio import content_hash, decode_image, read_bytes

    encoder = _encoder(spec, batch_size)  # the ceiling's: loaded already
    transform, size = encoder.preprocess, encoder.image_size
    files = sorted(p for p in folder.iterdir() if p.is_file())[:n]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.thread_time()
        decoding = 0.0
        for path in files:
            data = read_bytes(path)
            content_hash(data)
            t0 = time.thread_time()
            image = decode_image(data, size).image
            decoding += time.thread_time() - t0
            transform(image)
        per_image = 1000 / len(files)
        return (time.thread_time() - started) * per_image, decoding * per_image
    finally:
        torch.set_num_threads(saved)


_ENCODERS: dict[tuple[str, int], object] = {}


def _encoder(spec: str, batch_size: int):  # type: ignore[no-untyped-def]
    from clipfind.encoder import ClipEncoder

    key = (spec, batch_size)
    if key not in _ENCODERS:
        encoder = ClipEncoder(spec, device="cpu", batch_size=batch_size)
        encoder.model  # noqa: B018 - load now, not inside the timed call
        _ENCODERS[key] = encoder
    return _ENCODERS[key]


def index_once(folder: Path, spec: str, batch_size: int, workers: int | None,
               data_dir: Path, extra: tuple[str, ...] = ()) -> dict[str, float]:
    """One ``clipfind index`` run into a fresh collection; its JSON plus wall time.
    ``extra``: more options for the command (``("--ray", ADDRESS)``)."""
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [str(CLIPFIND), "index", str(folder), "--model", spec, "--data-dir", str(data_dir),
           "--batch-size", str(batch_size), "--device", "cpu", "--json", *extra]
    if workers:
        cmd += ["--workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"clipfind index {' '.join(extra)} failed:\n{done.stderr}")
    doc = json.loads(done.stdout)
    return {"encoded": doc["encoded"], "wall_s": wall,
            "pipeline_ips": doc["pipeline_images_per_second"],
            "command_ips": doc["encoded"] / wall, "skipped": doc["skipped"]}


def equality(folder: Path, spec: str, data_dir: Path, n: int = 8) -> float:
    """Lowest cosine between a stored vector (draft decoding) and the model's own
    ``encode_image(preprocess(full-resolution image))`` over ``n`` photos."""
    from clipfind.config import Settings
    from clipfind.imageio import load_image
    from clipfind.store.collection import Collection

    encoder = _encoder(spec, 32)
    coll = Collection(Settings(data_dir=data_dir))
    try:
        items = sorted(coll.catalog.states_under([folder]).values(), key=lambda s: s.path)[:n]
        worst = 1.0
        for state in items:
            stored = coll.catalog.vector_of(state.id)
            ref = encoder.encode_images([load_image(Path(state.path)).image])[0]
            worst = min(worst, float(np.dot(stored, ref)))
    finally:
        coll.close()
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="*", default=["jpeg12mp", "png", "small"])
    parser.add_argument("--count", type=int, default=192, help="photos per set")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (auto)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    spec = model_spec()
    folders = {kind: photo_set(kind, args.count) for kind in args.kinds}
    busy = warn_if_busy()
    work = out_dir("tmp", "indexing")
    model_only: list[dict[str, float]] = []
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in args.kinds}
    prepare: dict[str, list[float]] = {kind: [] for kind in args.kinds}
    decode: dict[str, list[float]] = {kind: [] for kind in args.kinds}
    for r in range(args.rounds):
        model_only.append(ceilings(spec, args.batch_size, args.count))
        print(f"round {r + 1}: model-only {model_only[-1]}", flush=True)
        for kind, folder in folders.items():
            total_ms, decode_ms = prepare_cpu_ms(folder, spec, args.batch_size)
            prepare[kind].append(total_ms)
            decode[kind].append(decode_ms)
            runs[kind].append(index_once(folder, spec, args.batch_size, args.workers,
                                         work / kind))
            print(f"round {r + 1}: {kind} prepare {prepare[kind][-1]:.1f} ms cpu/image, "
                  f"{runs[kind][-1]}", flush=True)
    rows = summary_rows(folders, model_only, runs, prepare, decode)
    if "jpeg12mp" in folders:
        cos = equality(folders["jpeg12mp"], spec, work / "jpeg12mp")
        print(f"\nlowest cosine, stored (draft decode) vs full-resolution reference: {cos:.5f}")
    else:
        cos = None
    print_table(f"Indexing throughput, ViT-B-32, batch {args.batch_size} (best of {args.rounds})",
                rows, ["set", "files", "mean_mb", "ceiling_ips", "default_loop_ips", "pipeline_ips",
                       "ratio", "bound", "model_ms", "prepare_ms", "decode_ms", "command_ips",
                       "command_ratio"])
    print("\nbound = model_ms / (model_ms + prepare_ms): the most of the ceiling a pipeline "
          "can reach when the model's CPU time per image (model_ms, the ceiling's) and the "
          "decoding's (prepare_ms: read + hash + decode + preprocess; decode_ms of it the "
          "decoding alone) share the same cores")
    write_json("indexing", {"args": vars(args), "other_load": busy, "rows": rows,
                            "model_only": model_only, "runs": runs, "prepare_cpu_ms": prepare,
                            "decode_cpu_ms": decode,
                            "equality_min_cosine": cos})


def summary_rows(folders: dict[str, Path], model_only: list[dict[str, float]],
                 runs: dict[str, list[dict[str, float]]],
                 prepare: dict[str, list[float]],
                 decode: dict[str, list[float]]) -> list[dict[str, object]]:
    """One row per photo set: best rounds, ratios, and the CPU bound on the ratio."""
    best_default = max(c["default"] for c in model_only)
    fastest = max((c[k], c[f"{k}_cpu_ms"]) for c in model_only for k in ("default", "streams"))
    best_ceiling, model_ms = fastest  # the CPU time per image of the fastest schedule
    rows: list[dict[str, object]] = []
    for kind, folder in folders.items():
        best = max(runs[kind], key=lambda x: x["pipeline_ips"])
        command = max(x["command_ips"] for x in runs[kind])
        prepare_ms = min(prepare[kind])  # other work only ever adds to CPU time (caches)
        rows.append({
            "set": kind, **folder_stats(folder), "ceiling_ips": round(best_ceiling, 2),
            "default_loop_ips": round(best_default, 2), "pipeline_ips": best["pipeline_ips"],
            "ratio": round(best["pipeline_ips"] / best_ceiling, 3),
            "ratio_vs_default_loop": round(best["pipeline_ips"] / best_default, 3),
            "bound": round(model_ms / (model_ms + prepare_ms), 3),
            "model_ms": round(model_ms, 1), "prepare_ms": round(prepare_ms, 1),
            "decode_ms": round(min(decode[kind]), 1),
            "command_ips": round(command, 2), "command_ratio": round(command / best_ceiling, 3),
        })
    return rows

if __name__ == "__main__":
    main()
