"""Tuning an IVF index's ``nprobe`` on the collection's own vectors.

Recall depends on how the data clusters, which no formula of the collection size knows,
so after building, the smallest ``nprobe`` that reaches :data:`TARGET_RECALL` recall@10
against exact search is looked up on a sample of queries drawn from the collection:
half are stored vectors (their own row left out of the truth), half are stored vectors
moved to cosine ~0.85 in a random direction, whose neighbours are farther and scored
more alike, as with text queries (the harder case for an IVF index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import faiss
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Search = Callable[..., tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]
TARGET_RECALL = 0.97  # on the tuning sample; leaves room for harder real queries
K = 10
SAMPLE = 96
MOVED_COSINE = 0.85


def tune_nprobe(index: faiss.Index, ids: npt.NDArray[np.int64],
                vectors: npt.NDArray[np.float32], start: int) -> int:
    """The smallest power-of-two multiple of ``start`` with recall@10 >= target."""
    ivf = faiss.extract_index_ivf(index)
    if len(vectors) <= K + 1:
        return ivf.nlist
    queries, truth = _sample_truth(ids, vectors)
    return tune_nprobe_with(index, queries, truth, start)


def tune_nprobe_with(index: faiss.Index, queries: npt.NDArray[np.float32],
                     truth: npt.NDArray[np.int64], start: int, ceiling: int | None = None,
                     search: Search | None = None) -> int:
    """:func:`tune_nprobe` given the queries and their exact top-10 ids. ``ceiling``:
    the most lists probed (every list by default; scanning all of a 10M-vector index
    for the tuning queries alone would take minutes). ``search(index, queries, k,
    params)``: how results are found (default ``index.search``; a re-ranking stage)."""
    ivf = faiss.extract_index_ivf(index)
    top = min(ivf.nlist, ceiling or ivf.nlist)
    # Quantisation alone costs some recall (near-ties swap at rank 10): aim for the
    # target, or for within 0.01 of what probing ``top`` lists achieves.
    target = min(TARGET_RECALL, _recall_at(index, queries, truth, top, search) - 0.01)
    nprobe = max(1, min(start, ivf.nlist))
    while True:
        recall = _recall_at(index, queries, truth, nprobe, search)
        log.debug("nprobe %d: recall@%d %.3f", nprobe, K, recall)
        if recall >= target or nprobe >= top:
            log.info("IVF index: nprobe %d of %d lists, recall@%d %.3f on its own vectors",
                     nprobe, ivf.nlist, K, recall)
            return nprobe
        nprobe = min(top, nprobe * 2)


def search_params(index: faiss.Index, nprobe: int,
                  sel: faiss.IDSelector | None = None) -> faiss.SearchParameters:
    """Search parameters for an IVF index, however it is wrapped: an OPQ rotation in
    front, an HNSW coarse quantiser (searched with ``efSearch`` = 2 x nprobe, as
    autofaiss sets it). The returned object keeps its parts alive."""
    ivf = faiss.extract_index_ivf(index)
    params = faiss.SearchParametersIVF(nprobe=nprobe) if sel is None else \
        faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
    keep: list[object] = [sel]
    if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        hnsw = faiss.SearchParametersHNSW(efSearch=max(16, 2 * nprobe))
        params.quantizer_params = hnsw
        keep.append(hnsw)
    if isinstance(index, faiss.IndexPreTransform):
        outer = faiss.SearchParametersPreTransform()
        outer.index_params = params
        keep.append(params)
        params = outer
    params.keep_alive = keep  # type: ignore[attr-defined]  # SWIG holds no references
    return params


def tuning_queries(ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
                   ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Tuning queries from a sample of stored vectors: half the vectors themselves, half
    moved to cosine ~0.85; with each query's own id (``-1`` for moved ones), which the
    truth must leave out."""
    rng = np.random.default_rng(0)
    n, dim = vectors.shape
    rows = rng.choice(n, size=min(SAMPLE, n), replace=False)
    half = len(rows) // 2
    sigma = np.sqrt((1 / MOVED_COSINE**2 - 1) / dim)  # isotropic noise to that cosine
    noise = rng.standard_normal((len(rows) - half, dim)).astype(np.float32) * sigma
    moved = vectors[rows[half:]] + noise
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    queries = np.ascontiguousarray(np.concatenate([vectors[rows[:half]], moved]), dtype=np.float32)
    own = np.concatenate([ids[rows[:half]], np.full(len(rows) - half, -1, np.int64)])
    return queries, own


def _recall_at(index: faiss.Index, queries: npt.NDArray[np.float32],
               truth: npt.NDArray[np.int64], nprobe: int, search: Search | None = None) -> float:
    params = search_params(index, nprobe)
    _, found = (search or _plain)(index, queries, K, params)
    return _recall(found, truth)


def _plain(index: faiss.Index, queries: npt.NDArray[np.float32], k: int,
           params: faiss.SearchParameters) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    return index.search(queries, k, params=params)


def _sample_truth(ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
                  ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    queries, own = tuning_queries(ids, vectors)
    truth = ids[_exact(vectors, queries, K + 1)]
    # a stored vector's own row is its trivial first neighbour: leave it out
    out = np.empty((len(queries), K), np.int64)
    for i, row in enumerate(truth):
        out[i] = row[row != own[i]][:K]
    return queries, out


def _exact(vectors: npt.NDArray[np.float32], queries: npt.NDArray[np.float32],
           k: int, chunk: int = 131_072) -> npt.NDArray[np.int64]:
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ vectors[start : start + chunk].T
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
        i = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)
    return best_i


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size
