"""Re-ranking product-quantised candidates with 8-bit scalar codes read from disk.

Product codes of 64-128 bytes lose too much for CLIP-like vectors: near neighbours score
alike, and recall@10 from the codes alone stays near 0.5-0.7 however many lists are
probed (docs/performance.md). faiss's answer is a refinement stage (``IndexRefine``):
ask the coarse index for ``REFINE_FACTOR`` x k candidates, score those with finer codes,
keep the best k. ``IndexRefine`` holds the finer codes in memory; here they stay in a
memory-mapped file (8-bit scalar codes, one byte a dimension, rows in id order), and a
query reads only its ~100 candidates' rows, so resident memory grows with the rows
touched, not with the collection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

REFINE_FACTOR = 10  # candidates a result from the product codes

Ids = npt.NDArray[np.int64]
Vecs = npt.NDArray[np.float32]


def new_quantizer(dim: int, sample: Vecs) -> faiss.IndexScalarQuantizer:
    """An 8-bit scalar quantiser trained on ``sample`` (an empty index: its file is small)."""
    sq = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq.train(np.ascontiguousarray(sample, np.float32))
    return sq


@dataclass
class Refiner:
    """The scalar quantiser, the sorted ids (memory-mapped) and the codes file, whose
    rows are read with ``pread``: a mapping would count every cached page the kernel
    maps around a touched row (64 KB for a 512-byte row) as the process's memory."""

    quantizer: faiss.IndexScalarQuantizer
    ids: Ids
    codes_path: Path
    _fd: int = -1

    @classmethod
    def open(cls, quantizer: Path, ids: Path, codes: Path) -> Refiner:
        sq = faiss.read_index(str(quantizer))
        id_map = np.memmap(ids, dtype=np.int64, mode="r")
        return cls(sq, id_map, Path(codes), os.open(codes, os.O_RDONLY))

    def __del__(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)

    def _rows(self, rows: Ids) -> npt.NDArray[np.uint8]:
        width = self.quantizer.code_size
        out = np.empty((len(rows), width), np.uint8)
        for i, row in enumerate(rows.tolist()):
            out[i] = np.frombuffer(os.pread(self._fd, width, row * width), np.uint8)
        return out

    def vector_of(self, item_id: int) -> Vecs:
        """The (8-bit quantised) vector of ``item_id``; ``KeyError`` when it has none."""
        row = int(np.searchsorted(self.ids, item_id))
        if row >= len(self.ids) or self.ids[row] != item_id:
            raise KeyError(item_id)
        return self.quantizer.sa_decode(self._rows(np.array([row])))[0]

    def rerank(self, queries: Vecs, candidates: Ids, k: int) -> tuple[Vecs, Ids]:
        """Best ``k`` of each row of ``candidates`` (``-1`` = none) by their finer codes."""
        scores = np.full(candidates.shape, -np.inf, np.float32)
        valid = candidates >= 0
        rows = np.searchsorted(self.ids, candidates[valid])
        rows = np.minimum(rows, len(self.ids) - 1)
        known = self.ids[rows] == candidates[valid]
        vecs = self.quantizer.sa_decode(self._rows(rows))
        which = np.nonzero(valid)
        s = np.einsum("ij,ij->i", vecs, queries[which[0]])
        s[~known] = -np.inf  # not in this refiner (cannot happen for one build)
        scores[which] = s
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_s = np.take_along_axis(scores, order, axis=1)
        top_i = np.take_along_axis(candidates, order, axis=1)
        top_i[~np.isfinite(top_s)] = -1
        return top_s, top_i

    def search(
        self, index: faiss.Index, queries: Vecs, k: int, params: faiss.SearchParameters | None = None
    ) -> tuple[Vecs, Ids]:
        """``index``'s top ``REFINE_FACTOR`` x k, re-ranked to the best ``k``."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.quantizer.d)
        _, cand = index.search(queries, k * REFINE_FACTOR, params=params)
        return self.rerank(queries, cand, k)
