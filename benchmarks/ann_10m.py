"""An on-disk IVF-PQ index at 10 million CLIP-like vectors: build time, bytes a vector,
resident memory at search, recall@10 against exact search, search p50/p95.

10M x 512 float32 is 20 GB: nothing here holds the vectors. Each chunk is generated from
its own seed (``benchmarks/synthetic.py``'s mixture, the same generator as
``benchmarks/ann.py``) inside the worker that adds it, so every process regenerates
exactly the vectors it needs. The index is built by the library's sharded builder
(``clipfind.store.ondisk.build_ondisk``: train once on a sample, add chunks in separate
processes, merge the inverted lists into one ``.ivfdata`` file), with the kind and code
size the memory budget picks (``clipfind.store.index_budget``). Exact search: the same
pass runs ``faiss.knn`` of 200 held-out queries (100 image-like, 100 text-like) over
each chunk and merges the top 10s.

Resident memory and latency are measured in a fresh process that loads the saved index
as ``clipfind`` does (lists memory-mapped) and runs the 200 queries one at a time on one
thread, twice: the first pass reads the touched lists from the page cache or disk.

    nice -n 5 .venv/bin/python -m benchmarks.ann_10m --n 10000000 --folder /work/scratch/ann10m
    .venv/bin/python -m benchmarks.ann_10m --n 1000000 --folder /tmp/ann1m     # development
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import latency, warn_if_busy, write_json
from benchmarks.synthetic import ClipLike, query_sets, recall_at_k


@dataclass(frozen=True)
class SyntheticSource:
    """``n`` CLIP-like vectors in chunks of ``size``; chunk ``i`` has its own seed."""

    n: int
    dim: int = 512
    size: int = 250_000

    def count(self) -> int:
        return self.n

    def chunks(self) -> int:
        return -(-self.n // self.size)

    def chunk(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start = i * self.size
        m = min(self.size, self.n - start)
        return np.arange(start, start + m, dtype=np.int64), ClipLike(self.dim).images(m, seed=10_000 + i)

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """A fresh draw from the same mixture (not stored: its ids match nothing)."""
        return -np.arange(1, n + 1, dtype=np.int64), ClipLike(self.dim).images(n, seed=9_999)


def measure(folder: Path, nprobe: int) -> None:
    """(Run in a fresh process.) Load, search 200 queries twice, print JSON."""
    import faiss

    from clipfind.store.refine import Refiner
    from clipfind.store.vector_tuning import search_params

    faiss.omp_set_num_threads(1)
    queries = np.load(folder / "queries.npy")
    truth = np.load(folder / "truth.npy")
    before, anon_before, file_before = _rss_mb(), _rss_mb("RssAnon:"), _rss_mb("RssFile:")
    index = faiss.read_index(str(folder / "index.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
    refiner = Refiner.open(*(folder / f"index.{part}" for part in ("sq.faiss", "ids", "codes")))
    loaded = _rss_mb()
    params = search_params(index, nprobe)
    out: dict[str, object] = {"load_mb": round(loaded - before, 1)}
    for run in ("first", "second"):  # the first reads every list and code it needs
        times, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            found.append(refiner.search(index, q, 10, params)[1][0])
            times.append((time.perf_counter() - t0) * 1000)
        stats = latency(times)
        out[f"{run}_p50_ms"], out[f"{run}_p95_ms"] = stats["p50_ms"], stats["p95_ms"]
        found_a = np.array(found)
        out["recall_image"] = round(recall_at_k(found_a[:100], truth[:100], 10), 4)
        out["recall_text"] = round(recall_at_k(found_a[100:], truth[100:], 10), 4)
        out["recall"] = round(recall_at_k(found_a, truth, 10), 4)
    pq_only = index.search(queries, 10, params=params)[1]  # the product codes alone
    out["recall_pq_only"] = round(recall_at_k(pq_only, truth, 10), 4)
    out["resident_mb"] = round(_rss_mb() - before, 1)
    out["resident_anon_mb"] = round(_rss_mb("RssAnon:") - anon_before, 1)  # heap
    out["resident_file_mb"] = round(_rss_mb("RssFile:") - file_before, 1)  # mapped pages
    out["process_rss_mb"] = round(_rss_mb(), 1)
    print(json.dumps(out))


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the build's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _rss_mb(field: str = "VmRSS:") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--budget", default="1.5GB", help="index memory budget (picks the code size)")
    parser.add_argument("--folder", type=Path, help="work folder, not in the repo (required)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=250_000)
    parser.add_argument("--opq", action="store_true", help="an OPQ rotation before the codes")
    parser.add_argument("--keep", action="store_true", help="keep the index files")
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "NPROBE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), int(args.measure[1]))
        return
    if args.folder is None:
        parser.error("--folder is required: a work folder outside the repository")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import faiss

    from clipfind.store.index_budget import budget_choice, nlist_for, parse_memory
    from clipfind.store.ondisk import build_ondisk

    busy = warn_if_busy()
    budget = parse_memory(args.budget)
    assert budget is not None
    kind, m = budget_choice(args.n, 512, budget)
    if kind != "ivf-pq":
        raise SystemExit(f"a {args.budget} budget picks {kind} at {args.n:,}: this benchmark is for ivf-pq")
    nlist = nlist_for(args.n)
    args.folder.mkdir(parents=True, exist_ok=True)
    qs = query_sets(100)
    queries = np.ascontiguousarray(np.concatenate([qs["image"], qs["text"]]))
    started, cpu_before = time.perf_counter(), _cpu_s()
    built = build_ondisk(
        SyntheticSource(args.n, 512, args.chunk),
        nlist,
        m,
        args.folder,
        workers=args.workers,
        start_nprobe=max(1, nlist // 256),
        extra=queries,
        opq=args.opq,
    )
    build_s, build_cpu_s = time.perf_counter() - started, _cpu_s() - cpu_before
    data = args.folder / "index.ivfdata"
    built.data_file.rename(data)  # the lists stay mapped; the header names the new file
    for part, path in zip(("sq.faiss", "ids", "codes"), built.refine_files, strict=True):
        path.rename(args.folder / f"index.{part}")
    refine_bytes = sum((args.folder / f"index.{p}").stat().st_size for p in ("sq.faiss", "ids", "codes"))
    faiss.downcast_InvertedLists(faiss.extract_index_ivf(built.index).invlists).filename = str(data)
    faiss.write_index(built.index, str(args.folder / "index.faiss"))
    np.save(args.folder / "queries.npy", queries)
    np.save(args.folder / "truth.npy", built.extra_truth)
    size = data.stat().st_size + (args.folder / "index.faiss").stat().st_size
    nprobe = built.nprobe
    del built
    row: dict[str, object] = {
        "n": args.n,
        "budget": args.budget,
        "kind": kind,
        "pq_bytes": m,
        "opq": args.opq,
        "nlist": nlist,
        "build_s": round(build_s, 1),
        "build_cpu_s": round(build_cpu_s, 1),  # all processes: the wall time on idle cores x cores
        "bytes_per_vector": round(size / args.n, 1),
        "index_mb": round(size / 2**20, 1),
        "refine_bytes_per_vector": round(refine_bytes / args.n, 1),
        "nprobe": nprobe,
    }
    print(json.dumps(row), flush=True)  # the build's figures, before the search is measured
    command = [sys.executable, "-m", "benchmarks.ann_10m", "--measure", str(args.folder), str(nprobe)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    row.update(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps(row), flush=True)
    given = {k: str(v) for k, v in vars(args).items()}
    write_json("ann_10m", {"args": given, "other_load": busy, "row": row})
    if not args.keep:
        shutil.rmtree(args.folder)


if __name__ == "__main__":
    main()
