"""Engines side by side: torch fp32 against ONNX Runtime fp32 and int8 on the same
ViT-B-32 random weights (benchmarks.common's checkpoint; random weights cost the same
compute as trained ones), in one run.

* image tower, img/s on ready 224 px tensors (batches of 16), at one thread (what each
  of the index run's two encode streams gets) and at every core, rounds interleaved;
* text tower, ms per short query, one thread (each engine's query path), distinct texts;
* cosine of each ONNX tower to torch fp32 ``encode_image(preprocess(photo))`` on real
  coco-mini photos and on the text probes;
* a cold one-shot ``clipfind search "a dog" -k 5`` on an indexed collection, each engine
  in its own fresh process, alternated.

Ratios are per round (same machine state), the spread is min-max over rounds.

    .venv/bin/python -m benchmarks.engines
    .venv/bin/python -m benchmarks.engines --rounds 5 --photos 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    ROOT,
    model_spec,
    out_dir,
    print_table,
    source_photos,
    warn_if_busy,
    write_json,
)

QUERIES = [
    "a dog",
    "sunset over the sea",
    "a red car parked on a street",
    "birthday cake",
    "two people hiking in the snowy mountains",
    "an old church",
    "a bowl of ramen",
    "cat on a sofa",
    "city at night",
    "a close-up of a bee",
]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def image_rows(loaded, manifest, rounds: int) -> list[dict]:  # type: ignore[no-untyped-def]
    import torch

    from clipfind.onnx_sessions import open_session

    pixels = torch.rand(16, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    feed = pixels.numpy()
    rows = []
    for threads in (1, os.cpu_count() or 1):
        sessions = {
            p: open_session(str(manifest.path(n)), threads)
            for p, n in (("onnx fp32", "image.onnx"), ("onnx int8", "image.int8.onnx"))
        }
        runs: dict[str, list[float]] = {"torch fp32": [], "onnx fp32": [], "onnx int8": []}
        saved = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for session in sessions.values():  # warm-up
                session.run(None, {"pixels": feed[:2]})
            for _ in range(rounds):
                started = time.perf_counter()
                with torch.inference_mode():
                    loaded.model.encode_image(pixels)
                runs["torch fp32"].append(16 / (time.perf_counter() - started))
                for name, session in sessions.items():
                    started = time.perf_counter()
                    session.run(None, {"pixels": feed})
                    runs[name].append(16 / (time.perf_counter() - started))
        finally:
            torch.set_num_threads(saved)
        for name, values in runs.items():
            ratio = [v / t for v, t in zip(values, runs["torch fp32"], strict=True)]
            rows.append(
                {"threads": threads, "engine": name, "img_s": _spread(values), "x_torch": _spread(ratio)}
            )
    return rows


def text_rows(loaded, manifest, rounds: int) -> list[dict]:  # type: ignore[no-untyped-def]
    import torch

    from clipfind.onnx_towers import OnnxTowers
    from clipfind.text_int8 import build_int8_runner, encode_each
    from clipfind.text_tower import encode_tokens

    tokens = loaded.tokenizer(QUERIES)
    towers = OnnxTowers(manifest, None, None)  # text sessions run one thread
    int8 = build_int8_runner(loaded.model, loaded.tokenizer).model
    engines = {
        "torch fp32": lambda row: encode_tokens(loaded.model, row),
        "torch int8 (text_int8)": lambda row: encode_each(int8, row),
        "onnx fp32": lambda row: towers.encode_tokens(row.numpy(), "fp32"),
        "onnx int8": lambda row: towers.encode_tokens(row.numpy(), "int8"),
    }
    runs: dict[str, list[float]] = {k: [] for k in engines}
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for fn in engines.values():
                fn(tokens[:1])
            for _ in range(rounds):
                for name, fn in engines.items():
                    started = time.perf_counter()
                    for i in range(len(QUERIES)):
                        fn(tokens[i : i + 1])
                    runs[name].append((time.perf_counter() - started) * 1000 / len(QUERIES))
    finally:
        torch.set_num_threads(saved)
    return [
        {
            "engine": k,
            "ms_per_query": _spread(v),
            "x_torch_fp32": _spread([a / b for a, b in zip(runs["torch fp32"], v, strict=True)]),
        }
        for k, v in runs.items()
    ]


def fidelity_rows(loaded, manifest, photos: int) -> list[dict]:  # type: ignore[no-untyped-def]
    import torch
    from PIL import Image

    from clipfind.onnx_towers import OnnxTowers, normalise
    from clipfind.text_int8 import PROBE_TEXTS
    from clipfind.text_tower import encode_tokens

    paths = source_photos(photos)
    pixels = torch.stack([loaded.preprocess(Image.open(p).convert("RGB")) for p in paths])
    tokens = loaded.tokenizer(list(PROBE_TEXTS) + QUERIES)
    with torch.inference_mode():
        ref_img = normalise(loaded.model.encode_image(pixels).numpy())
        ref_txt = normalise(encode_tokens(loaded.model, tokens).numpy())
    towers = OnnxTowers(manifest, None, None)
    rows = []
    for precision in ("fp32", "int8"):
        img = (normalise(towers.encode_pixels(pixels.numpy(), precision)) * ref_img).sum(1)
        txt = (normalise(towers.encode_tokens(tokens.numpy(), precision)) * ref_txt).sum(1)
        rows.append(
            {
                "onnx": precision,
                "photos": len(paths),
                "image_cos_min": round(float(img.min()), 6),
                "image_cos_median": round(float(np.median(img)), 6),
                "text_cos_min": round(float(txt.min()), 6),
            }
        )
    return rows


def cold_rows(spec: str, rounds: int) -> list[dict]:
    """``clipfind search`` from a fresh process, torch and onnx alternated, on a small
    collection indexed with the ONNX engine (its export ready in the model cache)."""
    data = out_dir("engines", "data")
    cache = out_dir("engines", "cache")
    env = {**os.environ, "CLIPFIND_DATA_DIR": str(data), "CLIPFIND_MODEL_CACHE": str(cache)}
    exe = [str(Path(sys.executable).with_name("clipfind"))]
    photos = out_dir("engines", "photos")
    for p in source_photos(20):
        target = photos / p.name
        if not target.exists():
            target.symlink_to(p)
    subprocess.run(
        [*exe, "index", str(photos), "--model", spec, "--engine", "auto"],
        env=env,
        check=True,
        capture_output=True,
    )
    runs: dict[str, list[float]] = {"torch": [], "auto": []}
    for _ in range(rounds):
        for engine in runs:
            started = time.perf_counter()
            subprocess.run(
                [*exe, "search", "a dog", "-k", "5", "--engine", engine],
                env=env,
                check=True,
                capture_output=True,
            )
            runs[engine].append(time.perf_counter() - started)
    ratio = [t / o for t, o in zip(runs["torch"], runs["auto"], strict=True)]
    return [
        {"engine": k, "wall_s": _spread(v), "torch_over_this": _spread(ratio) if k == "auto" else ""}
        for k, v in runs.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=32)
    args = parser.parse_args()
    from clipfind import onnx_export
    from clipfind.modelspec import load_model

    busy = warn_if_busy()
    spec = model_spec()
    loaded = load_model(spec, "cpu", "fp32")
    started = time.perf_counter()
    manifest, made = onnx_export.export(loaded, out_dir("engines", "cache"))
    print(
        f"export {'made' if made else 'found'} in {time.perf_counter() - started:.1f}s: "
        f"{manifest.folder.relative_to(ROOT)}; self-check {manifest.doc['check']}",
        flush=True,
    )
    images = image_rows(loaded, manifest, args.rounds)
    print_table(
        "image tower, img/s on ready tensors (median (min-max))",
        images,
        ["threads", "engine", "img_s", "x_torch"],
    )
    texts = text_rows(loaded, manifest, args.rounds)
    print_table("text tower, one short query, one thread", texts, ["engine", "ms_per_query", "x_torch_fp32"])
    fidelity = fidelity_rows(loaded, manifest, args.photos)
    print_table(
        "cosine to torch fp32 on coco-mini photos and text probes",
        fidelity,
        ["onnx", "photos", "image_cos_min", "image_cos_median", "text_cos_min"],
    )
    cold = cold_rows(spec, args.rounds)
    print_table(
        'cold one-shot `clipfind search "a dog" -k 5` (s)', cold, ["engine", "wall_s", "torch_over_this"]
    )
    write_json(
        "engines",
        {
            "busy_before": busy,
            "rounds": args.rounds,
            "images": images,
            "texts": texts,
            "fidelity": fidelity,
            "cold": cold,
            "check": manifest.doc["check"],
        },
    )


if __name__ == "__main__":
    main()
