"""clipfind vs rclip 3 side by side in one run: indexing (pipeline and whole command),
a cold one-shot text query and peak memory, on 12 MP and small JPEGs, with the same
random ``ViT-B-32-256`` weights in both tools.

rclip lives in its own virtualenv, its data dir outside the repo::

    python3 -m venv /work/venv-rclip
    /work/venv-rclip/bin/pip install rclip
    .venv/bin/python -m benchmarks.peer_rclip --rounds 2

rclip 3 runs ONNX Runtime on ``visual.onnx`` and ``textual.onnx`` under
``$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/`` (plus the tokenizer vocabulary and
its model's legal files; it downloads only what is missing). This script exports our
local checkpoint's towers to those files once (un-normalised features, as rclip
normalises them itself), so rclip runs offline on exactly our weights. Both tools must
store the same vectors: every rclip vector's nearest clipfind vector must be the same
file, at cosine >= 0.999 (the script exits 1 otherwise, after printing the figures).
Each clipfind engine that ``clipfind index --help`` offers (``--engine torch|onnx``)
runs too.

Figures: ``pipeline_ips`` leaves out start-up and model loading: clipfind's own
``pipeline_images_per_second``; rclip's is its progress bar's final rate (files / time
from the bar's start, after start-up, to the last commit) with the visual ONNX session's
load time, measured here, taken out (rclip loads it lazily at the first batch): an
upper bound, as rclip's loader threads keep decoding during that load (``bar_ips`` in the
JSON, with the load left in, is the lower bound).
``command_ips`` divides by the whole command's wall time (rclip's also runs its query).
``peak_rss_mb`` is the command's own peak resident memory (GNU time's ``%M``).
``query_s`` is a cold one-shot ``search "a dog"`` process on the indexed folder. Tools
alternate within a round; the best round of each is kept (other work on a shared machine
only slows a run) and the spread across rounds is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import out_dir, print_table, vit_b32_checkpoint, warn_if_busy, write_json
from benchmarks.photos import photo_set
from benchmarks.rclip_side import (
    QUERY,
    add_rclip_args,
    check_rclip,
    prepare_rclip_data,
    rclip_index,
    rclip_query,
    run_measured,
    visual_session_load_s,
)

MODEL = "ViT-B-32-256"
SAME_COSINE = 0.999
CLIPFIND = Path(sys.executable).with_name("clipfind")
TARGETS = {  # issue #17: clipfind / rclip at least (ips) or at most (query, memory)
    ("small", "pipeline_ips"): 1.1,
    ("small", "command_ips"): 1.2,
    ("jpeg12mp", "pipeline_ips"): 2.0,
    ("jpeg12mp", "command_ips"): 1.5,
    ("any", "query_s"): 1.0,
    ("any", "peak_rss_mb"): 1.2,
}


def clipfind_index(folder: Path, spec: str, data_dir: Path, batch_size: int, engine: str | None) -> dict:
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [
        str(CLIPFIND),
        "index",
        str(folder),
        "--model",
        spec,
        "--data-dir",
        str(data_dir),
        "--batch-size",
        str(batch_size),
        "--device",
        "cpu",
        "--json",
    ]
    run = run_measured(cmd + (["--engine", engine] if engine else []), expect_json=True)
    doc = json.loads(run["stdout"])
    return {
        "encoded": doc["encoded"],
        "wall_s": run["wall_s"],
        "peak_rss_mb": run["peak_rss_mb"],
        "pipeline_ips": doc["pipeline_images_per_second"],
        "command_ips": doc["encoded"] / run["wall_s"],
        "timings": doc.get("timings"),
    }


def clipfind_query(data_dir: Path, k: int, engine: str | None) -> tuple[float, list[str]]:
    cmd = [str(CLIPFIND), "search", QUERY, "-k", str(k), "--data-dir", str(data_dir), "--json"]
    run = run_measured(
        cmd + (["--engine", engine] if engine and has_engine("search") else []), expect_json=True
    )
    return run["wall_s"], [hit["path"] for hit in json.loads(run["stdout"])["results"]]


def agreement(datadir: Path, data_dir: Path) -> dict[str, float]:
    """Same-file cosine (lowest) and the share of rclip vectors whose nearest clipfind
    vector is the same file."""
    from clipfind.config import Settings
    from clipfind.store.collection import Collection

    with sqlite3.connect(datadir / "db.sqlite3") as con:
        theirs = {
            p: np.frombuffer(v, np.float32)
            for p, v in con.execute("SELECT filepath, vector FROM images WHERE deleted IS NULL")
        }
    coll = Collection(Settings(data_dir=data_dir))
    try:
        ours = {
            path: coll.catalog.vector_of(state.id)
            for path, state in coll.catalog.states_under([Path(next(iter(theirs))).parent]).items()
        }
    finally:
        coll.close()
    paths = sorted(ours)
    mine = np.stack([ours[p] for p in paths])
    other = np.stack([theirs[p] for p in paths])
    nearest = (other @ mine.T).argmax(axis=1)
    return {
        "files": len(paths),
        "min_same_file_cosine": float((other * mine).sum(axis=1).min()),
        "nearest_same_file": float(np.mean(nearest == np.arange(len(paths)))),
    }


def has_engine(command: str) -> bool:
    """Whether ``clipfind COMMAND`` takes ``--engine`` (the ONNX Runtime engine landed)."""
    helptext = subprocess.run(
        [str(CLIPFIND), command, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    ).stdout
    return "--engine" in helptext


def one_round(
    args: argparse.Namespace,
    folders: dict[str, Path],
    spec: str,
    tools: list[str | None],
    session_s: float,
    work: Path,
) -> dict:
    """Each tool once per set: index, then a cold query; the vectors compared."""
    result: dict = {}
    for kind, folder in folders.items():
        runs: dict[str, dict] = {}
        runs["rclip"] = rclip_index(args.venv, args.datadir, folder, args.batch_size, session_s)
        runs["rclip"]["query_s"], rclip_top = rclip_query(args.venv, args.datadir, folder, args.k)
        for engine in tools:
            name = f"clipfind-{engine}" if engine else "clipfind"
            data_dir = work / f"{kind}-{name}"
            runs[name] = clipfind_index(folder, spec, data_dir, args.batch_size, engine)
            runs[name]["query_s"], top = clipfind_query(data_dir, args.k, engine)
            # the query's top k in both tools (clipfind's text tower may be int8: near-ties
            # between random-weight scores can swap places, so the overlap is reported)
            overlap = len(set(top) & set(rclip_top)) / max(1, len(rclip_top))
            runs[name]["agreement"] = {**agreement(args.datadir, data_dir), "top_k_overlap": overlap}
        for name, run in runs.items():
            print(f"{kind} {name}: {json.dumps(run)}", flush=True)
        result[kind] = runs
    return result


def summary_rows(rounds: list[dict]) -> list[dict]:
    """Best round per tool and set, the spread across rounds, ratios to rclip."""
    rows = []
    for kind in rounds[0]:
        best: dict[str, dict] = {}
        for name in rounds[0][kind]:
            runs = [r[kind][name] for r in rounds]
            best[name] = {
                "pipeline_ips": max(x["pipeline_ips"] for x in runs),
                "command_ips": max(x["command_ips"] for x in runs),
                "query_s": min(x["query_s"] for x in runs),
                "peak_rss_mb": min(x["peak_rss_mb"] for x in runs),
                "spread": {
                    key: [round(min(x[key] for x in runs), 2), round(max(x[key] for x in runs), 2)]
                    for key in ("pipeline_ips", "command_ips", "query_s", "peak_rss_mb")
                },
            }
        peer = best["rclip"]
        for name, figures in best.items():
            row = {
                "set": kind,
                "tool": name,
                **{k: round(v, 2) for k, v in figures.items() if k != "spread"},
                "spread": figures["spread"],
            }
            for key in ("pipeline_ips", "command_ips", "query_s", "peak_rss_mb"):
                row[f"{key}_x"] = round(figures[key] / peer[key], 2)
            rows.append(row)
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """Each clipfind row's ratios against issue #17's targets."""
    lines = []
    for row in rows:
        if row["tool"] == "rclip":
            continue
        for (kind, key), target in TARGETS.items():
            if kind not in (row["set"], "any"):
                continue
            ratio = row[f"{key}_x"]
            met = ratio >= target if key.endswith("ips") else ratio <= target
            sign = ">=" if key.endswith("ips") else "<="
            lines.append(
                f"{row['set']:9} {row['tool']:15} {key:13} {ratio:5.2f}x rclip "
                f"(target {sign} {target}x): {'met' if met else 'NOT met'}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count-12mp", type=int, default=60)
    parser.add_argument("--count-small", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32, help="both tools")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-k", type=int, default=5)
    add_rclip_args(parser, "rclip's data dir (ONNX files, its database)")
    args = parser.parse_args()
    check_rclip(args.venv, "this script's docstring")
    checkpoint = vit_b32_checkpoint(MODEL)
    prepare_rclip_data(args.datadir, checkpoint)
    folders = {
        "jpeg12mp": photo_set("jpeg12mp", args.count_12mp),
        "small": photo_set("small", args.count_small),
    }
    # real paths: rclip records its working directory's, clipfind the path it is given
    folders = {k: v.resolve() for k, v in folders.items() if len(list(v.iterdir()))}
    tools: list[str | None] = ["torch", "onnx"] if has_engine("index") else [None]
    busy = warn_if_busy()
    session_s = min(visual_session_load_s(args.venv, args.datadir) for _ in range(3))
    print(f"rclip's visual ONNX session loads in {session_s:.2f}s (taken out of its pipeline)")
    work = out_dir("tmp", "peer-rclip")
    for engine in list(tools):  # one-time costs out of the rounds (an engine's cached export)
        try:
            clipfind_index(
                photo_set("small", 4).resolve(), f"local-dir:{checkpoint}", work / "warm-up", 4, engine
            )
        except SystemExit as exc:  # an engine that fails here is reported and left out
            print(f"clipfind --engine {engine} left out: {str(exc)[-1500:]}", flush=True)
            tools.remove(engine)
    rounds = [
        one_round(args, folders, f"local-dir:{checkpoint}", tools, session_s, work)
        for _ in range(args.rounds)
    ]
    rows = summary_rows(rounds)
    print_table(
        f"clipfind vs rclip, {MODEL} random weights, batch {args.batch_size} "
        f"(best of {args.rounds}; _x = clipfind / rclip)",
        rows,
        [
            "set",
            "tool",
            "pipeline_ips",
            "pipeline_ips_x",
            "command_ips",
            "command_ips_x",
            "query_s",
            "query_s_x",
            "peak_rss_mb",
            "peak_rss_mb_x",
        ],
    )
    print("\nspread across rounds (min, max):")
    for row in rows:
        print(f"  {row['set']:9} {row['tool']:15} {row['spread']}")
    print("\nsame vectors (last round):")
    for kind, runs in rounds[-1].items():
        for name, run in runs.items():
            if "agreement" in run:
                print(f"  {kind:9} {name:15} {run['agreement']}")
    print("\ntargets (issue #17):")
    for line in verdicts(rows):
        print("  " + line)
    agreed = [run["agreement"] for runs in rounds[-1].values() for run in runs.values() if "agreement" in run]
    write_json(
        "peer_rclip",
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "other_load": busy,
            "rclip_visual_session_s": session_s,
            "rows": rows,
            "rounds": rounds,
        },
    )
    if any(a["nearest_same_file"] < 1.0 or a["min_same_file_cosine"] < SAME_COSINE for a in agreed):
        raise SystemExit("the tools stored different vectors: not the same model, figures void")


if __name__ == "__main__":
    main()
