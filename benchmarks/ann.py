"""Approximate index quality: recall@10 against exact search, search latency, memory per
vector, resident memory when loaded, and build time, on CLIP-like synthetic vectors.

The vectors are a mixture of Gaussians on the sphere shaped like CLIP image embeddings
(see ``benchmarks/synthetic.py``; random Gaussian vectors would be a worst case for
IVF). Queries: 100 image-like and 100 text-like (offset by a modality gap). The index is
built exactly as a collection builds it (``VectorIndex.build``: kind and lists from the
size, k-means and ``nprobe`` tuned on the vectors themselves). Latency is one query at a
time, as a user's search runs. Resident memory is measured in a fresh process after
loading the saved index (memory-mapped when large, as ``clipfind`` loads it) and running
200 queries.

    .venv/bin/python -m benchmarks.ann                         # 100k and 1M, auto kind
    .venv/bin/python -m benchmarks.ann --sizes 1000000 --kinds auto ivf-flat ivf-pq flat
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import latency, out_dir, print_table, warn_if_busy, write_json
from benchmarks.synthetic import cached_images, exact_top_k, query_sets, recall_at_k


def measure_resident(path: Path, mmap: str) -> None:
    """(Run in a fresh process.) Print the RSS growth from loading ``path`` and searching."""
    from clipfind.store.vectors import VectorIndex

    before = _rss_mb()
    index = VectorIndex.load(path, mmap=None if mmap == "auto" else mmap == "yes")
    assert index is not None
    loaded = _rss_mb()
    rng = np.random.default_rng(0)
    for q in query_sets(100, index.dim).values():
        for row in q:
            index.search(row, 10)
    q = rng.standard_normal((1, index.dim)).astype(np.float32)
    index.search(q[0] / np.linalg.norm(q), 10)
    print(json.dumps({"load_mb": round(loaded - before, 1), "after_queries_mb": round(_rss_mb() - before, 1),
                      "mmapped": index.mmapped}))


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def resident(path: Path, mmap: str = "auto") -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.ann", "--measure-rss", str(path), mmap],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_kind(n: int, kind: str, base: np.ndarray, ids: np.ndarray,
               queries: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, object]:
    from clipfind.store.vectors import VectorIndex

    started = time.perf_counter()
    index = VectorIndex.build(ids, base, base.shape[1], kind=None if kind == "auto" else kind)
    build_s = time.perf_counter() - started
    row: dict[str, object] = {"n": n, "kind": index.kind, "nlist": index.plan.nlist,
                              "nprobe": index.plan.nprobe, "build_s": round(build_s, 1)}
    times, cpu = [], []
    for name, q in queries.items():
        found = []
        for vec in q:
            t0, c0 = time.perf_counter(), time.thread_time()
            found.append(index.search(vec, 10)[1])
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
        row[f"recall_{name}"] = round(recall_at_k(np.array(found), truth[name], 10), 4)
    row["recall"] = round(float(np.mean([row[f"recall_{k}"] for k in queries])), 4)
    stats = latency(times)
    row["p50_ms"], row["p95_ms"] = stats["p50_ms"], stats["p95_ms"]
    row["cpu_p50_ms"] = latency(cpu)["p50_ms"]  # one thread: the wall time on an idle machine
    path = out_dir("tmp", "ann") / f"{index.kind}-{n}.faiss"
    index.save(path)
    del index
    row["bytes_per_vector"] = round(path.stat().st_size / n, 1)
    row["file_mb"] = round(path.stat().st_size / 2**20, 1)
    res = resident(path)
    row["resident_mb"], row["mmapped"] = res["after_queries_mb"], res["mmapped"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="*", default=["auto"],
                        help="auto (what a collection of that size gets), flat, ivf-flat, "
                        "ivf-sq8, ivf-fp16, ivf-pq")
    parser.add_argument("--measure-rss", nargs=2, metavar=("PATH", "MMAP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_rss:
        measure_resident(Path(args.measure_rss[0]), args.measure_rss[1])
        return
    busy = warn_if_busy()
    rows = []
    queries = query_sets(100)
    for n in args.sizes:
        base = np.ascontiguousarray(cached_images(n))
        ids = np.arange(1, n + 1, dtype=np.int64)
        truth = {name: exact_top_k(base, q, 10) + 1 for name, q in queries.items()}
        for kind in args.kinds:
            rows.append(bench_kind(n, kind, base, ids, queries, truth))
            print(rows[-1], flush=True)
        del base
    print_table("Approximate index vs exact search (CLIP-like synthetic vectors, 512-d)", rows,
                ["n", "kind", "nlist", "nprobe", "recall", "recall_image", "recall_text", "p50_ms",
                 "p95_ms", "cpu_p50_ms", "bytes_per_vector", "resident_mb", "build_s"])
    write_json("ann", {"args": vars(args), "other_load": busy, "rows": rows,
                       "vectors": "CLIP-like mixture of Gaussians on the sphere (benchmarks/synthetic.py)"})


if __name__ == "__main__":
    main()
