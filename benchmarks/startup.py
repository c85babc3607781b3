"""Start-up: ``clipfind search`` from a cold process, broken down into interpreter,
imports, opening the collection, loading the index, importing torch and open_clip, loading
the model and the query.

Uses the benchmark collection of ``benchmarks.query`` (made on first use; its index is
saved, so it is loaded, memory-mapped when large, not rebuilt). A fresh Python process
runs the same steps as ``clipfind search`` with a clock between them; the real command
is timed as a whole beside it. ``heavy_modules_after_cli_import`` lists modules a search
does not need at import time (torch, fastapi, open_clip, faiss...) that were imported
anyway: it should be empty.

    .venv/bin/python -m benchmarks.startup                  # 100k items
    .venv/bin/python -m benchmarks.startup --size 1000000
    CLIPFIND_TEXT_PRECISION=fp32 .venv/bin/python -m benchmarks.startup   # no int8 build
    .venv/bin/python -m benchmarks.startup --model-only     # the model-load target alone

Model load against reading its checkpoint (target: load <= 2x read), side by side in one
fresh process with the file in the page cache: ``read`` is the checkpoint file read into
tensors (``safetensors.torch.load(path.read_bytes())``, every byte copied once);
``load`` is ``clipfind.modelspec.load_model`` (model built, weights assigned from the
memory-mapped file) plus one read of every 4 KiB page of every weight, so pages a lazy
mapping has not yet brought in are charged to the load, not to the first query; ``map``
is the same file memory-mapped (``safetensors.torch.load_file``) and its pages read, the
least any loader can do.
``open_clip`` is open_clip's own ``create_model_and_transforms`` of the same folder
(random initialisation, then a copy of the checkpoint), as clipfind loaded before.

The first query includes building and checking the int8 text tower (on a CPU, unless
``CLIPFIND_TEXT_PRECISION=fp32``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import model_spec, out_dir, print_table, warn_if_busy, write_json

PHASES = r"""
import json, sys, time
t = [time.perf_counter()]
import clipfind.api.cli.app  # noqa: the CLI as `clipfind` imports it
heavy = [m for m in ("torch", "fastapi", "uvicorn", "open_clip", "faiss", "sqlalchemy", "transformers")
         if m in sys.modules]
from clipfind.search import build_terms, search
t.append(time.perf_counter())
from clipfind.config import Settings
from clipfind.store.collection import Collection
from clipfind.encoder import ClipEncoder
coll = Collection(Settings(data_dir=sys.argv[1], collection=sys.argv[2]))
t.append(time.perf_counter())
index = coll.vector_index()
t.append(time.perf_counter())
import open_clip, torch  # noqa: what loading the model imports first
t.append(time.perf_counter())
enc = ClipEncoder(coll.model_spec, device="cpu", text_precision=coll.settings.text_precision)
enc.loaded
t.append(time.perf_counter())
page = search(coll, enc, build_terms("a dog on a beach"), k=20)
t.append(time.perf_counter())
names = ["imports", "open_collection", "index_load", "torch_open_clip_import", "model_load",
         "first_query"]
print(json.dumps({"phases_s": {n: round(b - a, 3) for n, a, b in zip(names, t, t[1:])},
                  "heavy_modules_after_cli_import": heavy, "index_mmapped": index.mmapped,
                  "index_kind": index.kind, "hits": len(page.hits)}))
"""


MODEL_LOAD = r"""
import json, statistics, sys, time
from pathlib import Path
import open_clip, torch
from safetensors.torch import load, load_file
from clipfind.modelspec import load_model

folder, rounds = Path(sys.argv[1]), int(sys.argv[2])
weights = folder / "open_clip_model.safetensors"

def read():
    return load(weights.read_bytes())

def touch(tensors):
    with torch.no_grad():  # every 4 KiB page of every tensor read once
        sum(float(t.reshape(-1)[::1024].sum()) for t in tensors)

def mapped():
    state = load_file(str(weights))
    touch(state.values())
    return state

def fast():
    loaded = load_model(f"local-dir:{folder}", "cpu", "fp32")
    touch(loaded.model.state_dict().values())
    return loaded

def tokenizer():
    return open_clip.get_tokenizer(f"local-dir:{folder}")

def own():
    return open_clip.create_model_and_transforms(f"local-dir:{folder}")

read()  # the file into the page cache
times = {"read": [], "mapped": [], "load": [], "tokenizer": [], "open_clip": []}
steps = (("read", read), ("mapped", mapped), ("load", fast), ("tokenizer", tokenizer),
         ("open_clip", own))
for _ in range(rounds):
    for name, fn in steps:
        started = time.perf_counter()
        result = fn()
        times[name].append(time.perf_counter() - started)
        del result
print(json.dumps({k: round(statistics.median(v), 3) for k, v in times.items()}
                 | {"runs": times, "bytes": weights.stat().st_size}))
"""


def measure_model_load(rounds: int) -> dict[str, object]:
    """Model load vs reading its checkpoint, medians over ``rounds`` in one process."""
    from benchmarks.common import vit_b32_checkpoint

    folder = vit_b32_checkpoint()
    done = subprocess.run([sys.executable, "-c", MODEL_LOAD, str(folder), str(rounds)],
                          capture_output=True, text=True, check=True)
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    doc["load_to_read"] = round(doc["load"] / doc["read"], 2)
    doc["load_to_mapped"] = round(doc["load"] / doc["mapped"], 2)
    doc["load_and_tokenizer_to_read"] = round((doc["load"] + doc["tokenizer"]) / doc["read"], 2)
    doc["open_clip_to_load"] = round(doc["open_clip"] / doc["load"], 2)
    return doc


def print_model_load(doc: dict[str, object], rounds: int) -> None:
    rows = [{"step": "read checkpoint into tensors", "seconds": doc["read"]},
            {"step": "map checkpoint (+ pages read)", "seconds": doc["mapped"]},
            {"step": "clipfind load_model (+ pages read)", "seconds": doc["load"]},
            {"step": "tokenizer (first text only)", "seconds": doc["tokenizer"]},
            {"step": "open_clip create_model_and_transforms", "seconds": doc["open_clip"]}]
    size = int(doc["bytes"]) / 2**20  # type: ignore[call-overload]
    print_table(f"ViT-B-32 model load from a local checkpoint ({size:.0f} MiB, page cache, "
                f"median of {rounds})", rows, ["step", "seconds"])
    print(f"load / read = {doc['load_to_read']} (target <= 2); with the tokenizer "
          f"{doc['load_and_tokenizer_to_read']}; load / map = {doc['load_to_mapped']} (the "
          f"cost over the fastest way in); open_clip's own loading / load = "
          f"{doc['open_clip_to_load']}")


def prepare(n: int) -> tuple[Path, str]:
    from benchmarks.query import open_collection
    from clipfind.encoder import ClipEncoder

    encoder = ClipEncoder(model_spec(), device="cpu")
    coll = open_collection(n, encoder)
    coll.vector_index()  # built and saved once, so start-up loads it
    coll.close()
    return out_dir("query"), f"n{n}"


def measure(data_dir: Path, name: str) -> dict[str, object]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interpreter = time.perf_counter() - started
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PHASES, str(data_dir), name],
                          capture_output=True, text=True, check=True)
    phases_wall = time.perf_counter() - started
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    cli = Path(sys.executable).with_name("clipfind")
    started = time.perf_counter()
    subprocess.run([str(cli), "search", "a dog on a beach", "--data-dir", str(data_dir),
                    "--collection", name, "--json"], capture_output=True, check=True)
    command = time.perf_counter() - started
    return {"interpreter_s": round(interpreter, 3), **doc["phases_s"],
            "phased_process_s": round(phases_wall, 3), "clipfind_search_s": round(command, 3),
            **{k: v for k, v in doc.items() if k != "phases_s"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-only", action="store_true",
                        help="Only the model load against reading its checkpoint.")
    args = parser.parse_args()
    busy = warn_if_busy()
    model_load = measure_model_load(args.rounds)
    print_model_load(model_load, args.rounds)
    if args.model_only:
        write_json("startup_model", {"args": vars(args), "other_load": busy,
                                     "model_load": model_load})
        return
    data_dir, name = prepare(args.size)
    runs = [measure(data_dir, name) for _ in range(args.rounds)]
    best = min(runs, key=lambda r: r["clipfind_search_s"])  # type: ignore[arg-type,return-value]
    rows = [{"phase": k, "seconds": v} for k, v in best.items() if k.endswith("_s") or k in (
        "imports", "open_collection", "index_load", "torch_open_clip_import", "model_load",
        "first_query")]
    print_table(f"clipfind search from a cold process, {args.size:,} items (best of {args.rounds})",
                rows, ["phase", "seconds"])
    print(f"heavy modules imported by the CLI itself: {best['heavy_modules_after_cli_import'] or 'none'}; "
          f"index {best['index_kind']}, memory-mapped: {best['index_mmapped']}")
    write_json("startup", {"args": vars(args), "other_load": busy, "model_load": model_load,
                           "best": best, "runs": runs})


if __name__ == "__main__":
    main()
