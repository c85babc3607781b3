"""The FAISS index: derived from the catalog, ids = catalog primary keys, saved atomically.

The index kind is chosen from the collection size by :func:`choose_kind`: exact inner
product while that is fast enough, approximate beyond. Inner product on L2-normalised
vectors is cosine similarity.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

FLAT_LIMIT = 200_000  # exact search stays under ~20 ms per query up to here on 2 cores


def choose_kind(n: int) -> str:
    """Index kind for a collection of ``n`` vectors (``flat`` = exact)."""
    return "flat" if n <= FLAT_LIMIT else "ivf-sq8"


def _build_faiss(kind: str, dim: int, train: npt.NDArray[np.float32] | None) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "ivf-sq8":
        n = 0 if train is None else len(train)
        nlist = int(max(16, min(65536, 4 * np.sqrt(max(n, 1)))))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        if train is not None and len(train):
            sample = train[np.random.default_rng(0).permutation(len(train))[: nlist * 64]]
            ivf.train(np.ascontiguousarray(sample))
        ivf.nprobe = max(8, nlist // 32)
        return faiss.IndexIDMap2(ivf)
    raise ValueError(f"unknown index kind {kind!r}")


class VectorIndex:
    """A FAISS index over catalog ids, safe to search from several threads."""

    def __init__(self, index: faiss.Index, kind: str, generation: int = 0) -> None:
        self.index = index
        self.kind = kind
        self.generation = generation
        self._lock = threading.RLock()

    @classmethod
    def build(
        cls,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        dim: int,
        kind: str | None = None,
        generation: int = 0,
    ) -> VectorIndex:
        kind = kind or choose_kind(len(ids))
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
        index = _build_faiss(kind, dim, vectors if kind != "flat" else None)
        if len(ids):
            index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        return cls(index, kind, generation)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(
        self,
        query: npt.NDArray[np.float32],
        k: int,
        allowed: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-``k`` ``(scores, ids)`` for one query vector, best first. ``allowed``
        restricts the search to those ids before top-k is taken."""
        k = max(0, min(k, len(self)))
        if k == 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            params = faiss.SearchParameters(sel=selector)
            inner = faiss.downcast_index(self.index.index)
            if isinstance(inner, faiss.IndexIVF):
                params = faiss.SearchParametersIVF(sel=selector, nprobe=inner.nprobe)
        with self._lock:
            scores, ids = self.index.search(q, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        if not len(ids):
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids: npt.NDArray[np.int64]) -> None:
        if len(ids):
            with self._lock:
                self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def reconstruct(self, item_id: int) -> npt.NDArray[np.float32]:
        with self._lock:
            return self.index.reconstruct(int(item_id))

    # -- files -------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with self._lock:
            faiss.write_index(self.index, str(tmp))
        _fsync(tmp)
        os.replace(tmp, path)
        meta = {"generation": self.generation, "kind": self.kind, "count": len(self)}
        side = _sidecar(path)
        tmp_side = side.with_suffix(".json.tmp")
        tmp_side.write_text(json.dumps(meta))
        os.replace(tmp_side, side)

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> VectorIndex | None:
        """The saved index, or ``None`` when it is missing or unreadable."""
        side = _sidecar(path)
        if not path.is_file() or not side.is_file():
            return None
        try:
            meta = json.loads(side.read_text())
            flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
            index = faiss.read_index(str(path), flags)
        except (OSError, RuntimeError, ValueError):
            return None
        return cls(index, meta.get("kind", "flat"), int(meta.get("generation", -1)))


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
