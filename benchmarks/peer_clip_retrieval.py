"""clipfind index vs ``clip-retrieval inference`` on the same folder of 12 MP JPEGs, with
the same ViT-B-32 weights from the same local checkpoint, side by side in one run.

clip-retrieval lives in its own virtualenv (its pins clash with clipfind's)::

    python3 -m venv /work/venv-clip-retrieval
    /work/venv-clip-retrieval/bin/pip install clip-retrieval "setuptools<70"
    .venv/bin/python -m benchmarks.peer_clip_retrieval --count 96

(``setuptools<70``: its ``clip`` dependency imports ``pkg_resources``.) Its loader is
not patched: ``--clip_model open_clip:ViT-B-32/<path>.safetensors`` makes open_clip load
the checkpoint file as the pretrained weights; the script checks that both tools produce
the same vectors (best-match cosine), so both really ran the same model. Both get the
same batch size and 2 preprocessing workers / decode threads (the machine has 2 cores).
``pipeline`` rates leave out start-up and model loading (clip-retrieval's own partition
statistics; clipfind's ``pipeline_images_per_second``); ``command`` rates divide by each
command's wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from benchmarks.common import model_spec, out_dir, print_table, vit_b32_checkpoint, warn_if_busy, write_json
from benchmarks.indexing import index_once
from benchmarks.photos import photo_set


def run_clip_retrieval(venv: Path, folder: Path, out: Path, batch_size: int, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    weights = vit_b32_checkpoint() / "open_clip_model.safetensors"
    cmd = [str(venv / "bin" / "clip-retrieval"), "inference", "--input_dataset", str(folder),
           "--output_folder", str(out), "--input_format", "files",
           "--clip_model", f"open_clip:ViT-B-32/{weights}", "--use_jit", "False",
           "--enable_text", "False", "--batch_size", str(batch_size),
           "--num_prepro_workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"clip-retrieval failed:\n{done.stderr[-3000:]}")
    stats = [json.loads(p.read_text()) for p in (out / "stats").glob("*.json")]
    count = sum(s["sample_count"] for s in stats)
    busy = sum(s["total_duration"] for s in stats)
    embeddings = np.concatenate([np.load(p) for p in sorted((out / "img_emb").glob("*.npy"))])
    return {"encoded": count, "wall_s": wall, "pipeline_ips": count / busy,
            "command_ips": count / wall, "embeddings": embeddings}


def same_model(theirs: np.ndarray, data_dir: Path) -> float:
    """Lowest best-match cosine of clip-retrieval's vectors among clipfind's."""
    from clipfind.config import Settings
    from clipfind.store.collection import Collection

    coll = Collection(Settings(data_dir=data_dir))
    try:
        ours = np.concatenate([v for _, v in coll.catalog.iter_vectors()])
    finally:
        coll.close()
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    return float((theirs.astype(np.float32) @ ours.T).max(axis=1).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--venv", type=Path, default=Path("/work/venv-clip-retrieval"))
    args = parser.parse_args()
    if not (args.venv / "bin" / "clip-retrieval").is_file():
        raise SystemExit(f"no clip-retrieval in {args.venv}; see this script's docstring")
    folder = photo_set("jpeg12mp", args.count)
    spec = model_spec()
    busy = warn_if_busy()
    work = out_dir("tmp", "peer")
    ours, theirs = [], []
    for r in range(args.rounds):
        theirs.append(run_clip_retrieval(args.venv, folder, work / "clip-retrieval",
                                         args.batch_size, args.workers))
        print(f"round {r + 1}: clip-retrieval { {k: v for k, v in theirs[-1].items() if k != 'embeddings'} }",
              flush=True)
        ours.append(index_once(folder, spec, args.batch_size, args.workers, work / "clipfind"))
        print(f"round {r + 1}: clipfind {ours[-1]}", flush=True)
    cosine = same_model(theirs[-1]["embeddings"], work / "clipfind")
    best = {name: {key: max(run[key] for run in runs) for key in ("pipeline_ips", "command_ips")}
            for name, runs in (("clip-retrieval", theirs), ("clipfind", ours))}
    rows = [{"tool": name, "images": args.count, **{k: round(v, 2) for k, v in rates.items()},
             "pipeline_x": round(rates["pipeline_ips"] / best["clip-retrieval"]["pipeline_ips"], 2),
             "command_x": round(rates["command_ips"] / best["clip-retrieval"]["command_ips"], 2)}
            for name, rates in best.items()]
    print(f"\nsame model check: lowest best-match cosine between the tools' vectors {cosine:.4f}")
    print_table(f"12 MP JPEG indexing, ViT-B-32, batch {args.batch_size}, {args.workers} workers "
                f"(best of {args.rounds})", rows,
                ["tool", "images", "pipeline_ips", "pipeline_x", "command_ips", "command_x"])
    for run in theirs:
        run.pop("embeddings")
    write_json("peer_clip_retrieval", {"args": {k: str(v) for k, v in vars(args).items()},
                                       "other_load": busy, "rows": rows, "same_model_cosine": cosine,
                                       "runs": {"clip-retrieval": theirs, "clipfind": ours}})


if __name__ == "__main__":
    main()
