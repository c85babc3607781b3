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

import faiss
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

TARGET_RECALL = 0.97  # on the tuning sample; leaves room for harder real queries
K = 10
SAMPLE = 96
MOVED_COSINE = 0.85


def tune_nprobe(index: faiss.Index, ids: npt.NDArray[np.int64],
                vectors: npt.NDArray[np.float32], start: int) -> int:
    """The smallest power-of-two multiple of ``start`` with recall@10 >= target."""
    ivf = faiss.extract_index_ivf(index)
    n = len(vectors)
    if n <= K + 1:
        return ivf.nlist
    queries, truth = _sample_truth(ids, vectors)
    # Scalar quantisation alone costs a little recall (near-ties swap at rank 10): aim
    # for the target, or for within 0.01 of what probing every list achieves.
    target = min(TARGET_RECALL, _recall_at(index, queries, truth, ivf.nlist) - 0.01)
    nprobe = max(1, min(start, ivf.nlist))
    while True:
        recall = _recall_at(index, queries, truth, nprobe)
        log.debug("nprobe %d: recall@%d %.3f", nprobe, K, recall)
        if recall >= target or nprobe >= ivf.nlist:
            log.info("IVF index: nprobe %d of %d lists, recall@%d %.3f on its own vectors",
                     nprobe, ivf.nlist, K, recall)
            return nprobe
        nprobe = min(ivf.nlist, nprobe * 2)


def _recall_at(index: faiss.Index, queries: npt.NDArray[np.float32],
               truth: npt.NDArray[np.int64], nprobe: int) -> float:
    _, found = index.search(queries, K, params=faiss.SearchParametersIVF(nprobe=nprobe))
    return _recall(found, truth)


def _sample_truth(ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
                  ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    rng = np.random.default_rng(0)
    n, dim = vectors.shape
    rows = rng.choice(n, size=min(SAMPLE, n), replace=False)
    half = len(rows) // 2
    sigma = np.sqrt((1 / MOVED_COSINE**2 - 1) / dim)  # isotropic noise to that cosine
    noise = rng.standard_normal((len(rows) - half, dim)).astype(np.float32) * sigma
    moved = vectors[rows[half:]] + noise
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    queries = np.ascontiguousarray(np.concatenate([vectors[rows[:half]], moved]), dtype=np.float32)
    truth = _exact(vectors, queries, K + 1)
    # a stored vector's own row is its trivial first neighbour: leave it out
    out = np.empty((len(queries), K), np.int64)
    for i, row in enumerate(truth):
        keep = row[row != rows[i]] if i < half else row
        out[i] = ids[keep[:K]]
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
