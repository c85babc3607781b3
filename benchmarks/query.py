"""Query latency: a text query end to end (encode + search + catalog join) and the
search part alone, at 10k, 100k and 1M items, exact and approximate; plus how long the
catalog takes to hand all vectors back (the index rebuild's read) and an incremental
index update.

A collection per size is made once under ``benchmarks/out/query/`` (SQLite catalog, one
row per item with its vector; CLIP-like synthetic vectors, see ``benchmarks/synthetic.py``)
and bound to the ViT-B-32 checkpoint (random weights: the text tower costs the same).
End-to-end is ``search.search(collection, encoder, terms, k=20)``, what ``clipfind
search`` and the HTTP API run per query with the model already loaded: *cold* queries
are texts never seen before (the text tower runs), *cached* ones repeat a text (the
encoder's query cache answers). The search part alone is ``VectorIndex.search``.
The query path runs on one thread, so besides wall times the table gives that thread's
CPU time (``*_cpu_p50``): the wall time it would take on an idle machine, a number
other work on a shared machine does not inflate.

    .venv/bin/python -m benchmarks.query                       # 10k, 100k, 1M
    .venv/bin/python -m benchmarks.query --sizes 100000 --queries 200
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import insert

from benchmarks.common import latency, model_spec, out_dir, print_table, warn_if_busy, write_json
from benchmarks.synthetic import cached_images, query_sets

WORDS = ["dog", "beach", "sunset", "red car", "mountain lake", "birthday cake", "cat on a sofa",
         "city at night", "snowy forest", "people hiking", "a bowl of ramen", "old church"]


def open_collection(n: int, encoder):  # type: ignore[no-untyped-def]
    """The benchmark collection of ``n`` items, created on first use."""
    from clipfind.config import Settings
    from clipfind.store.collection import Collection
    from clipfind.store.schema import Item

    settings = Settings(data_dir=out_dir("query"), collection=f"n{n}", model=encoder.spec)
    coll = Collection(settings)
    if coll.catalog.count() == n:
        return coll
    if coll.catalog.count():
        raise SystemExit(f"{settings.collection_dir} is incomplete; delete it and run again")
    print(f"creating a {n:,}-item catalog ...", flush=True)
    vectors = cached_images(n)
    coll.bind_model(encoder)
    start_time = datetime(2015, 1, 1)
    for start in range(0, n, 50_000):
        rows = [{"path": f"/photos/{i // 1000:04d}/img{i:07d}.jpg", "size": 3_000_000 + i,
                 "mtime_ns": 1_600_000_000_000_000_000 + i, "content_hash": f"{i:032x}",
                 "width": 4000, "height": 3000, "format": "JPEG", "status": "ok",
                 "taken_at": start_time + timedelta(minutes=i),
                 "vector": np.ascontiguousarray(vectors[i]).tobytes()}
                for i in range(start, min(n, start + 50_000))]
        with coll.catalog.session() as session:
            session.execute(insert(Item), rows)
            coll.catalog.bump_generation(session)
    return coll


def unique_texts(count: int, salt: str) -> list[str]:
    return [f"{WORDS[i % len(WORDS)]} {salt} {i}" for i in range(count)]


def bench_size(n: int, encoder, queries: int, kinds: list[str]) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    from clipfind.store.vectors import VectorIndex
    from search import build_terms, search

    coll = open_collection(n, encoder)
    started = time.perf_counter()
    chunks = list(coll.catalog.iter_vectors())
    read_s = time.perf_counter() - started
    ids = np.concatenate([c[0] for c in chunks])
    vecs = np.concatenate([c[1] for c in chunks])
    del chunks
    rows = []
    qs = query_sets(queries // 2 + 1)
    synthetic = np.concatenate([qs["image"], qs["text"]])[:queries]
    for kind in kinds:
        started = time.perf_counter()
        index = VectorIndex.build(ids, vecs, vecs.shape[1], kind=None if kind == "approx" else kind,
                                  generation=coll.catalog.generation)
        build_s = time.perf_counter() - started
        coll._index = index  # what vector_index() hands out for this generation
        slow = index.kind == "flat" and n > 200_000
        reps = max(10, queries // 10) if slow else queries
        alone = [timed(lambda q=q, ix=index: ix.search(q, 21)) for q in synthetic[:reps]]
        texts = unique_texts(reps, f"{kind}{n}{time.time_ns()}")

        def run(text: str) -> None:
            assert len(search(coll, encoder, build_terms(text), k=20).hits) == 20

        cold = [timed(lambda t=t: run(t)) for t in texts]
        cached = [timed(lambda t=t: run(t)) for t in texts]
        row = {"n": n, "kind": index.kind, "nprobe": index.plan.nprobe, "build_s": round(build_s, 1),
               "catalog_read_s": round(read_s, 2)}
        for name, pairs in (("search", alone), ("e2e_cold", cold), ("e2e_cached", cached)):
            stats = latency([w for w, _ in pairs])
            row[f"{name}_p50"], row[f"{name}_p95"] = stats["p50_ms"], stats["p95_ms"]
            row[f"{name}_cpu_p50"] = latency([c for _, c in pairs])["p50_ms"]
        rows.append(row)
        print(row, flush=True)
    rows[-1].update(_incremental_update(coll, ids, vecs))
    coll.close()
    return rows


def _incremental_update(coll, ids: np.ndarray, vecs: np.ndarray) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Time to fold one 32-image batch into the loaded index (what an index run does per
    batch), and to save the index file (once per run)."""
    index = coll._index
    new_ids = ids[:32].copy()
    started = time.perf_counter()
    index.add(new_ids, vecs[:32])
    add_ms = (time.perf_counter() - started) * 1000
    path = out_dir("tmp", "query") / f"index-{len(ids)}.faiss"
    started = time.perf_counter()
    index.save(path)
    return {"update_batch_ms": round(add_ms, 1), "save_s": round(time.perf_counter() - started, 2)}


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """``(wall ms, this thread's CPU ms)`` of one call. The query path runs on one thread,
    so its CPU time is what its wall time would be on an otherwise idle machine."""
    w0, c0 = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - w0) * 1000, (time.thread_time() - c0) * 1000


def text_encode_only(encoder, count: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    pairs = [timed(lambda t=t: encoder.encode_texts([t]))
             for t in unique_texts(count, f"enc{time.time_ns()}")]
    return {**latency([w for w, _ in pairs]), "cpu_p50_ms": latency([c for _, c in pairs])["p50_ms"]}


def main() -> None:
    from clipfind.encoder import ClipEncoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="*", default=["flat", "approx"],
                        help="flat (exact) and/or approx (the kind a collection of that size gets "
                        "beyond the flat limit: ivf-sq8), or an explicit kind")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    busy = warn_if_busy()
    encoder = ClipEncoder(model_spec(), device="cpu")
    encoder.encode_texts(["warm up the model"])
    enc = text_encode_only(encoder, args.queries)
    print(f"text encoding alone (cold): {enc}", flush=True)
    rows = []
    for n in args.sizes:
        rows.extend(bench_size(n, encoder, args.queries, args.kinds))
    print_table(f"Text query latency, ms (ViT-B-32 text tower; cold text encode alone p50 "
                f"{enc['p50_ms']:.1f} ms)", rows,
                ["n", "kind", "nprobe", "search_p50", "search_p95", "search_cpu_p50", "e2e_cold_p50",
                 "e2e_cold_p95", "e2e_cold_cpu_p50", "e2e_cached_p50", "e2e_cached_p95",
                 "e2e_cached_cpu_p50", "build_s", "catalog_read_s"])
    write_json("query", {"args": vars(args), "other_load": busy, "text_encode_cold": enc,
                         "rows": rows})


if __name__ == "__main__":
    main()
