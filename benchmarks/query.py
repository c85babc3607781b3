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

Text precision: cold queries run through an fp32 and an int8 encoder (one loaded model,
``text_precision`` fp32 / int8) on the same texts, interleaved; the first table compares
text encoding alone at 1 and 2 torch threads with the other core idle and with it kept
busy by a spinning process, and gives the cosine between the two encoders' vectors.

    .venv/bin/python -m benchmarks.query                       # 10k, 100k, 1M
    .venv/bin/python -m benchmarks.query --sizes 100000 --queries 200
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


ADJECTIVES = ["red", "old", "small", "happy", "snowy", "wet", "bright", "dark", "wooden",
              "tiny", "blue", "busy", "quiet", "green", "broken", "shiny", "foggy", "golden",
              "empty", "crowded"]
PLACES = ["", "at night", "in the rain", "on a table", "in a park", "by the sea", "in winter",
          "in the city", "at sunset", "indoors", "from above", "in a forest", "on the street",
          "near a river", "in the snow", "at the beach", "in a kitchen", "on a bridge",
          "in spring", "under a tree"]
_issued = itertools.count()


def unique_texts(count: int) -> list[str]:
    """``count`` query texts this process has not encoded before, shaped like real queries
    ("a foggy red car at night": 2-6 words, 5-10 tokens). Numbered salts would make every
    text 26-30 tokens long, three times what a search box sees (earlier runs did that)."""
    out = []
    for i in (next(_issued) for _ in range(count)):
        words = [ADJECTIVES[i % 20], WORDS[(i // 20) % len(WORDS)], PLACES[(i // 240) % 20]]
        more = i // (240 * 20)  # past 4,800 texts: a number keeps them new
        out.append(" ".join(w for w in ["a", *words, str(more) if more else ""] if w))
    return out


def bench_size(n: int, encoders: dict, queries: int, kinds: list[str],  # type: ignore[type-arg]
               cosines: dict[str, float]) -> list[dict[str, object]]:
    """``encoders``: {"fp32": ..., "int8": ...}; cached queries and the collection's model
    binding use int8, the CPU default."""
    from clipfind.search import build_terms, search
    from clipfind.store.vectors import VectorIndex

    encoder = encoders["int8"]
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
        texts = unique_texts(reps)

        def run(text: str, enc) -> None:  # type: ignore[no-untyped-def]
            assert len(search(coll, enc, build_terms(text), k=20).hits) == 20

        cold: dict[str, list[tuple[float, float]]] = {"fp32": [], "int8": []}
        for t in texts:  # interleaved: drift in the machine's load hits both alike
            for name in cold:
                cold[name].append(timed(lambda t=t, e=encoders[name]: run(t, e)))
        cached = [timed(lambda t=t: run(t, encoder)) for t in texts]
        # as a server runs: new texts, int8 only (in the interleaved runs above each int8
        # query follows an fp32 one, whose weights have just pushed the int8 ones out of
        # the CPU caches)
        alone_int8 = [timed(lambda t=t: run(t, encoder)) for t in unique_texts(reps)]
        row = {"n": n, "kind": index.kind, "nprobe": index.plan.nprobe, "build_s": round(build_s, 1),
               "catalog_read_s": round(read_s, 2)}
        for name, pairs in (("search", alone), ("e2e_cold_fp32", cold["fp32"]),
                            ("e2e_cold", cold["int8"]), ("e2e_new_int8_only", alone_int8),
                            ("e2e_cached", cached)):
            stats = latency([w for w, _ in pairs])
            row[f"{name}_p50"], row[f"{name}_p95"] = stats["p50_ms"], stats["p95_ms"]
            row[f"{name}_cpu_p50"] = latency([c for _, c in pairs])["p50_ms"]
        row["cold_fp32_over_int8"] = round(row["e2e_cold_fp32_p50"] / row["e2e_cold_p50"], 2)
        rows.append(row)
        print(row, flush=True)
    rows[-1].update(_incremental_update(coll, ids, vecs))
    rows[-1].update(top10_kept(vecs, qs["text"], cosines))
    coll.close()
    return rows


def top10_kept(vecs: np.ndarray, queries: np.ndarray, cosines: dict[str, float],
               seed: int = 0) -> dict[str, float]:
    """How much of a text query's exact top-10 survives when the query vector moves to
    cosine ``c`` of itself in a random direction: what an int8 text tower at that cosine
    to fp32 does to results (``cosines``: {name: c})."""
    from benchmarks.synthetic import exact_top_k, recall_at_k

    truth = exact_top_k(vecs, queries, 10)
    rng = np.random.default_rng(seed)
    out = {}
    for name, c in cosines.items():
        noise = rng.standard_normal(queries.shape).astype(np.float32)
        noise -= (noise * queries).sum(1, keepdims=True) * queries  # orthogonal to the query
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        moved = (c * queries + np.sqrt(1 - c * c) * noise).astype(np.float32)
        out[f"top10_kept_{name}"] = round(recall_at_k(exact_top_k(vecs, moved, 10), truth, 10), 3)
    return out


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


def text_encoders(spec: str) -> dict:  # type: ignore[type-arg]
    """fp32 and int8 encoders over one loaded model (the int8 runner is a separate copy
    of the text transformer; the fp32 model is never changed)."""
    from clipfind.encoder import ClipEncoder

    fp32 = ClipEncoder(spec, device="cpu", text_precision="fp32")
    int8 = ClipEncoder(spec, device="cpu", text_precision="int8")
    int8._loaded = fp32.loaded  # one copy of the weights in memory
    started = time.perf_counter()
    assert int8.text_precision == "int8", int8.text_model.note
    print(f"int8 text tower: {int8.text_model.note} (first build incl. warm-up "
          f"{time.perf_counter() - started:.2f}s)", flush=True)
    return {"fp32": fp32, "int8": int8}


@contextmanager
def query_threads(threads: int) -> Iterator[None]:
    """1: the query path as shipped (one torch thread for a few texts); 2: both cores."""
    import torch

    from clipfind import text_tower

    saved = torch.get_num_threads(), text_tower.SMALL_BATCH
    if threads > 1:
        torch.set_num_threads(threads)
        text_tower.SMALL_BATCH = 0  # let a single query use the thread team
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        text_tower.SMALL_BATCH = saved[1]


@contextmanager
def other_core_busy(busy: bool) -> Iterator[None]:
    """Another process spinning on one core, as on a machine that also does other work."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def bulk_encode(encoders: dict, count: int) -> dict[str, float]:  # type: ignore[type-arg]
    """Texts/s of one ``encode_texts`` call over ``count`` new prompts, as labeling and
    classify encode a label set (fp32 batched; int8 one text at a time per core)."""
    texts = [f"a photo of {t}." for t in unique_texts(count)]
    out = {}
    for name, enc in encoders.items():
        started = time.perf_counter()
        enc.encode_texts(texts)
        out[f"{name}_texts_per_s"] = round(count / (time.perf_counter() - started), 1)
    out["int8_over_fp32"] = round(out["int8_texts_per_s"] / out["fp32_texts_per_s"], 2)
    return out


def text_encode_matrix(encoders: dict, count: int) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    """Cold text encoding alone, fp32 vs int8 on the same texts, at 1 and 2 threads, other
    core idle and busy; and the cosine between the two precisions' vectors."""
    rows, vectors = [], {}
    for busy in (False, True):
        with other_core_busy(busy):
            for threads in (1, 2):
                texts = unique_texts(count)
                pairs: dict[str, list[tuple[float, float]]] = {"fp32": [], "int8": []}
                with query_threads(threads):
                    for t in texts:
                        for name, enc in encoders.items():
                            pairs[name].append(timed(lambda t=t, e=enc: e.encode_texts([t])))
                            vectors.setdefault(name, {})[t] = enc.encode_texts([t])[0]
                row = {"other_core": "busy" if busy else "idle", "threads": threads}
                for name, got in pairs.items():
                    row[f"{name}_p50"] = latency([w for w, _ in got])["p50_ms"]
                    row[f"{name}_p95"] = latency([w for w, _ in got])["p95_ms"]
                    row[f"{name}_cpu_p50"] = latency([c for _, c in got])["p50_ms"]
                row["fp32_over_int8"] = round(row["fp32_p50"] / row["int8_p50"], 2)
                rows.append(row)
                print(row, flush=True)
    keys = list(vectors["fp32"])
    cos = np.sum(np.stack([vectors["fp32"][k] for k in keys])
                 * np.stack([vectors["int8"][k] for k in keys]), axis=1)
    return rows, {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5),
                  "texts": len(keys)}


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="*", default=["flat", "approx"],
                        help="flat (exact) and/or approx (the kind a collection of that size gets "
                        "beyond the flat limit: ivf-sq8), or an explicit kind")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=256,
                        help="prompts encoded in one call, fp32 vs int8 (label-set encoding)")
    args = parser.parse_args()
    busy = warn_if_busy()
    encoders = text_encoders(model_spec())
    for enc in encoders.values():
        enc.encode_texts(["warm up the model"])
    bulk = bulk_encode(encoders, args.prompts)
    print(f"{args.prompts} prompts in one call: {bulk}", flush=True)
    matrix, cosine = text_encode_matrix(encoders, args.queries)
    print_table(f"Cold text encoding alone, ms (ViT-B-32 text tower, fp32 vs int8 on the same "
                f"texts; cosine fp32-int8 min {cosine['min']:.4f}, mean {cosine['mean']:.4f})",
                matrix, list(matrix[0]))
    from clipfind.text_int8 import MIN_COSINE

    cosines = {f"cos{cosine['mean']:.4f}": cosine["mean"], f"cos{MIN_COSINE}": MIN_COSINE}
    rows = []
    for n in args.sizes:
        rows.extend(bench_size(n, encoders, args.queries, args.kinds, cosines))
    print_table("Text query latency, ms (ViT-B-32 text tower; e2e_cold = int8 text tower, "
                "the CPU default)", rows,
                ["n", "kind", "nprobe", "search_p50", "search_p95", "search_cpu_p50",
                 "e2e_cold_fp32_p50", "e2e_cold_p50", "cold_fp32_over_int8", "e2e_cold_p95",
                 "e2e_new_int8_only_p50", "e2e_new_int8_only_p95",
                 "e2e_cold_cpu_p50", "e2e_cached_p50", "e2e_cached_p95", "e2e_cached_cpu_p50",
                 "build_s", "catalog_read_s"])
    print_table("Top-10 kept when a text query moves to the fp32-int8 mean cosine measured "
                "above, and to the self-check's threshold (exact search)",
                [r for r in rows if any(k.startswith("top10_kept") for k in r)],
                ["n", *(f"top10_kept_{name}" for name in cosines)])
    write_json("query", {"args": vars(args), "other_load": busy, "text_encode_cold": matrix,
                         "text_cosine_fp32_int8": cosine, "prompt_set_encoding": bulk,
                         "int8_check": encoders["int8"].text_model.note, "rows": rows})


if __name__ == "__main__":
    main()
