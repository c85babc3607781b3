"""``clipfind index --ray`` against the local pipeline on the same 12 MP JPEGs, side by side.

Starts a one-node Ray cluster on this machine (``ray start --head`` in a temporary
folder, as many CPUs as the machine has), then per round runs ``clipfind index`` into a
fresh collection twice, locally and with ``--ray 127.0.0.1:PORT``, in alternating
order, so both see the same machine state. Reports images/s of each and their ratio,
per round and best of rounds: ``pipeline`` (decode + encode + write, the summary's
``pipeline_images_per_second``; it starts once the model is loaded: locally the
driver's, on Ray the encode actors', whose wait is the run's load stage) and
``command`` (the whole command's wall time: start-up, joining the cluster, model
loads). Same model, batch size and
images; ``--device cpu``. The cluster's workers run at nice 0, as the local run does
(Ray's default is 15).

    .venv/bin/python -m benchmarks.ray_index                     # 96 × 12 MP, 2 rounds
    .venv/bin/python -m benchmarks.ray_index --count 48 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import indexing
from benchmarks.common import model_spec, out_dir, print_table, warn_if_busy, write_json
from benchmarks.photos import folder_stats, photo_set

BIN = Path(sys.executable).parent


def start_cluster(temp: Path, cpus: int) -> str:
    """``ray start --head`` on a free port; its ``127.0.0.1:PORT``."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(BIN / "ray"), "start", "--head", f"--port={port}", f"--num-cpus={cpus}",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    # Ray runs workers at nice 15: on a machine shared with other jobs they would lose
    # their share to them, which is not the engine's cost; the local run has nice 0 too.
    env = {**os.environ, "RAY_worker_niceness": "0"}
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return f"127.0.0.1:{port}"


def stop_cluster() -> None:
    subprocess.run([str(BIN / "ray"), "stop", "--force"], check=False, capture_output=True)


def index_once(folder: Path, spec: str, batch_size: int, data_dir: Path,
               ray: str | None) -> dict[str, float]:
    run = indexing.index_once(folder, spec, batch_size, None, data_dir,
                              extra=("--ray", ray) if ray else ())
    return {k: round(v, 2) if k.endswith(("_s", "_ips")) else v for k, v in run.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    spec = model_spec()
    folder = photo_set("jpeg12mp", args.count)
    busy = warn_if_busy()
    work = out_dir("tmp", "ray_index")
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths are short
    address = start_cluster(temp, os.cpu_count() or 1)
    rounds: list[dict[str, dict[str, float]]] = []
    # one-time costs out of the rounds: the model's ONNX export, made by its first load
    index_once(photo_set("small", 4), spec, 4, work / "warm-up", None)
    try:
        for r in range(args.rounds):
            order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
            result = {}
            for kind in order:
                result[kind] = index_once(folder, spec, args.batch_size, work / kind,
                                          address if kind == "ray" else None)
            rounds.append(result)
            print(f"round {r + 1} ({' then '.join(order)}): {result}", flush=True)
    finally:
        stop_cluster()
        shutil.rmtree(temp, ignore_errors=True)
    rows = []
    for measure in ("pipeline_ips", "command_ips"):
        local = [x["local"][measure] for x in rounds]
        ray = [x["ray"][measure] for x in rounds]
        ratios = [b / a for a, b in zip(local, ray, strict=True)]
        rows.append({"measure": measure, "local_best": max(local), "ray_best": max(ray),
                     "ratio_of_best": round(max(ray) / max(local), 3),
                     "ratio_per_round": " ".join(f"{q:.3f}" for q in ratios)})
    print_table(f"clipfind index --ray vs local, {args.count} × 12 MP JPEG, ViT-B-32, "
                f"batch {args.batch_size}, {os.cpu_count()} CPUs, one node", rows,
                ["measure", "local_best", "ray_best", "ratio_of_best", "ratio_per_round"])
    write_json("ray_index", {"args": vars(args), "other_load": busy, "folder": folder_stats(folder),
                             "rounds": rounds, "rows": rows})


if __name__ == "__main__":
    main()
