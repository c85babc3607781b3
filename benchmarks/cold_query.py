"""A cold one-shot text query, clipfind beside rclip 3: ``clipfind search "a dog" -k 5``
and ``rclip -n -t 5 "a dog"`` as fresh processes on the same indexed folder, with the
same random ``ViT-B-32-256`` weights (issue #17: clipfind's wall time <= rclip's).

Only the query part of ``benchmarks.peer_rclip``: each tool indexes the folder once
(skipped when its index is already there), then the two queries alternate for
``--rounds`` rounds after one untimed run each (files in the page cache). rclip runs
from its own virtualenv with a private data dir here whose model files link to those
``benchmarks.peer_rclip`` exports (so its indexing benchmark's database is left alone)::

    .venv/bin/python -m benchmarks.cold_query --rounds 7

Prints each tool's median wall time with the spread (min, max), the ratio of the
medians and the spread of the per-round ratios. ``--json`` times ``clipfind search
--json`` (what ``benchmarks.peer_rclip`` times) instead of the terminal rendering.
``--before PATH`` times another clipfind entry point (an older checkout's) in the same
rounds. ``--pycache DIR`` runs clipfind with its bytecode cached under DIR, as a wheel install
compiles it (an editable install under ``PYTHONDONTWRITEBYTECODE=1`` compiles every
clipfind module from source on every run); rclip's venv holds its compiled bytecode.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from benchmarks.common import out_dir, vit_b32_checkpoint, warn_if_busy, write_json
from benchmarks.peer_rclip import CLIPFIND, MODEL, clipfind_index
from benchmarks.photos import photo_set
from benchmarks.rclip_side import (
    QUERY,
    SUBDIR,
    add_rclip_args,
    check_rclip,
    prepare_rclip_data,
    rclip_env,
    run_measured,
)


def rclip_datadir(shared: Path, work: Path) -> Path:
    """A private rclip data dir: links to the exported model and vocabulary, its own db."""
    datadir = work / "rclip-data"
    datadir.mkdir(parents=True, exist_ok=True)
    for entry in shared.iterdir():
        if entry.name.startswith("db.sqlite3"):
            continue
        link = datadir / entry.name
        if not link.exists():
            link.symlink_to(entry.resolve())
    return datadir


def index_once(args: argparse.Namespace, folder: Path, datadir: Path, data_dir: Path) -> None:
    if not (datadir / "db.sqlite3").is_file():
        print(f"rclip indexes {folder} ...", flush=True)
        run_measured([str(args.venv / "bin" / "rclip"), "-t", "1", QUERY], cwd=folder, env=rclip_env(datadir))
    if not (data_dir / "collections" / "default" / "catalog.db").is_file():
        print(f"clipfind indexes {folder} ...", flush=True)
        spec = f"local-dir:{vit_b32_checkpoint(MODEL)}"
        clipfind_index(folder, spec, data_dir, 32, "onnx")


def commands(args: argparse.Namespace, folder: Path, datadir: Path, data_dir: Path) -> dict:
    env = dict(os.environ)
    if args.pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(args.pycache.resolve())
    query = ["search", QUERY, "-k", str(args.k), "--data-dir", str(data_dir)]
    query += ["--json"] if args.json else []
    cmds = {
        "clipfind": ([str(CLIPFIND), *query], None, env),
        "rclip": (
            [str(args.venv / "bin" / "rclip"), "-n", "-f", "-t", str(args.k), QUERY],
            folder,
            rclip_env(datadir),
        ),
    }
    if args.before:
        cmds["before"] = ([str(args.before), *query], None, env)
    return cmds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--count", type=int, default=200, help="small JPEGs indexed")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="time clipfind search --json")
    parser.add_argument(
        "--pycache", type=Path, default=None, help="clipfind's bytecode cached under this folder"
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another clipfind entry point (an older checkout's) timed alongside",
    )
    add_rclip_args(parser, "rclip's data dir with the exported model (benchmarks.peer_rclip)")
    args = parser.parse_args()
    check_rclip(args.venv, "benchmarks/peer_rclip.py")
    prepare_rclip_data(args.datadir, vit_b32_checkpoint(MODEL))
    if not (args.datadir / SUBDIR / "textual.onnx").is_file():
        raise SystemExit(f"no textual.onnx in {args.datadir / SUBDIR}")
    work = out_dir("tmp", "cold-query")
    folder = photo_set("small", args.count).resolve()
    datadir = rclip_datadir(args.datadir, work)
    data_dir = work / f"clipfind-{args.count}"
    index_once(args, folder, datadir, data_dir)
    cmds = commands(args, folder, datadir, data_dir)
    busy = warn_if_busy()
    walls: dict[str, list[float]] = {name: [] for name in cmds}
    for round_ in range(args.rounds + 1):  # round 0: untimed (page cache, bytecode)
        for name, (cmd, cwd, env) in cmds.items():
            run = run_measured(cmd, cwd=cwd, env=env)
            if round_:
                walls[name].append(run["wall_s"])
    ratios = [c / r for c, r in zip(walls["clipfind"], walls["rclip"], strict=True)]
    print(f"cold query {QUERY!r} -k {args.k}, {args.rounds} rounds, tools alternating")
    for name, values in walls.items():
        print(
            f"  {name:9} median {statistics.median(values):.3f} s "
            f"(min {min(values):.3f}, max {max(values):.3f})"
        )
    median_x = statistics.median(walls["clipfind"]) / statistics.median(walls["rclip"])
    if "before" in walls:
        before_x = statistics.median(walls["before"]) / statistics.median(walls["rclip"])
        print(f"  before / rclip: {before_x:.2f}x of the medians")
    print(
        f"  clipfind / rclip: {median_x:.2f}x of the medians; per round "
        f"{min(ratios):.2f}-{max(ratios):.2f}x (median {statistics.median(ratios):.2f}x); "
        f"target <= 1.0x: {'met' if median_x <= 1.0 else 'NOT met'}"
    )
    write_json(
        "cold_query",
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "other_load": busy,
            "wall_s": walls,
            "ratios": ratios,
            "median_ratio": median_x,
        },
    )


if __name__ == "__main__":
    main()
