"""The FAISS index: derived from the catalog, ids = catalog primary keys, saved atomically.

The index kind and its parameters come from the collection size (:func:`plan_index`):
exact inner product (``flat``) while a query over it stays within a few milliseconds,
an inverted-file index with 8-bit scalar quantisation (``ivf-sq8``) beyond that. An
IVF index is trained on the collection's own vectors (spherical k-means), and its
``nprobe`` is tuned on them too, for recall@10 against exact search. It is rebuilt when
the collection outgrows what it was planned for (:meth:`VectorIndex.fits`), and large
indexes are memory-mapped when loaded, so a search process does not read the whole file.
Inner product on L2-normalised vectors is cosine similarity.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from clipfind.errors import StorageError
from clipfind.store import ondisk_files
from clipfind.store.index_budget import FLAT_LIMIT, budget_choice
from clipfind.store.refine import Refiner
from clipfind.store.vector_tuning import search_params, tune_nprobe

log = logging.getLogger(__name__)

MMAP_BYTES = 64 * 2**20  # load index files bigger than this memory-mapped
KINDS = ("flat", "ivf-flat", "ivf-sq8", "ivf-fp16", "ivf-pq")
GROWTH = 2.0  # rebuild (retrain) once the collection is this many times its planned size


@dataclass(frozen=True)
class IndexPlan:
    """How an index is built: ``kind`` and, for IVF kinds, lists and lists probed.
    ``planned_for`` is the collection size the parameters were chosen for. ``budget``
    (bytes, 0 = none) chose the kind; ``ondisk`` IVF-PQ lists hold ``pq_bytes`` codes."""

    kind: str
    nlist: int = 0
    nprobe: int = 0
    planned_for: int = 0
    budget: int = 0
    pq_bytes: int = 0
    ondisk: bool = False


def choose_kind(n: int) -> str:
    """Index kind for a collection of ``n`` vectors (``flat`` = exact)."""
    return "flat" if n <= FLAT_LIMIT else "ivf-sq8"


def plan_index(n: int, kind: str | None = None) -> IndexPlan:
    """Parameters for ``n`` vectors: about ``2·sqrt(n)`` lists (a power of two), so a
    list holds ~``sqrt(n)/2`` vectors; ``nprobe`` starts at 1/64 of the lists and is
    tuned on the data at build time."""
    kind = kind or choose_kind(n)
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; known: {', '.join(KINDS)}")
    if kind == "flat":
        return IndexPlan("flat", planned_for=n)
    nlist = 2 ** round(math.log2(max(16.0, 2.0 * math.sqrt(max(n, 1)))))
    nlist = int(min(nlist, 16_384, max(16, n // 39)))  # faiss wants >= 39 points per list
    return IndexPlan(kind, nlist, max(1, nlist // 64), n)


def plan_for(n: int, dim: int, budget: int | None = None, kind: str | None = None) -> IndexPlan:
    """By size (:func:`plan_index`), or given a memory ``budget`` in bytes, the least
    lossy kind that fits it (:func:`clipfind.store.index_budget.budget_choice`)."""
    if kind or not budget:
        return plan_index(n, kind)
    kind, pq_bytes = budget_choice(n, dim, budget)
    plan = replace(plan_index(n, kind), budget=budget)
    if kind == "ivf-pq":
        plan = replace(plan, pq_bytes=pq_bytes, ondisk=True, nprobe=max(1, plan.nlist // 256))
    return plan


def _new_faiss(plan: IndexPlan, dim: int) -> faiss.Index:
    if plan.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    ip = faiss.METRIC_INNER_PRODUCT
    quantizer = faiss.IndexFlatIP(dim)
    if plan.kind == "ivf-flat":
        ivf = faiss.IndexIVFFlat(quantizer, dim, plan.nlist, ip)
    elif plan.kind == "ivf-pq":
        m = max(d for d in range(1, dim // 8 + 1) if dim % d == 0)  # ~8 dims per code byte
        ivf = faiss.IndexIVFPQ(quantizer, dim, plan.nlist, m, 8, ip)
    else:
        qtype = faiss.ScalarQuantizer.QT_8bit if plan.kind == "ivf-sq8" else faiss.ScalarQuantizer.QT_fp16
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, plan.nlist, qtype, ip)
    ivf.own_fields = True
    quantizer.this.disown()  # the IVF index frees its quantizer
    ivf.cp.spherical = True  # centroids on the sphere, like the vectors
    ivf.cp.niter = 12
    ivf.cp.max_points_per_centroid = 64  # enough for stable centroids, bounded time
    return ivf


def _train(index: faiss.Index, vectors: npt.NDArray[np.float32], plan: IndexPlan) -> None:
    if plan.kind == "flat" or not len(vectors):
        return
    cap = plan.nlist * 64 if plan.kind != "ivf-pq" else max(plan.nlist * 64, 65_536)
    rng = np.random.default_rng(0)
    if len(vectors) > cap:
        vectors = vectors[np.sort(rng.choice(len(vectors), cap, replace=False))]
    sample = vectors
    index.train(np.ascontiguousarray(sample))


@contextmanager
def omp_threads(n: int) -> Iterator[None]:
    """OpenMP threads for FAISS work on this thread, restored afterwards. FAISS and torch
    share the OpenMP runtime: a count left behind here would change how many threads
    torch's next forward pass on this thread uses."""
    saved = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(saved)


class VectorIndex:
    """A FAISS index over catalog ids, safe to search from several threads."""

    def __init__(self, index: faiss.Index, plan: IndexPlan, generation: int = 0,
                 path: Path | None = None, mmapped: bool = False,
                 data_file: Path | None = None, refiner: Refiner | None = None) -> None:
        self.index = index
        self.plan = plan
        self.generation = generation
        self.path = path
        self.mmapped = mmapped
        self.data_file = data_file  # on-disk lists (ondisk_files names the rest)
        self.refiner = refiner
        self.stale = False  # an on-disk index changed: rebuild it (:meth:`fits`)
        self._lock = threading.RLock()

    @property
    def kind(self) -> str:
        return self.plan.kind

    @classmethod
    def build(
        cls,
        ids: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
        dim: int,
        kind: str | None = None,
        generation: int = 0,
        plan: IndexPlan | None = None,
        tune: bool = True,
        budget: int | None = None,
        folder: Path | None = None,
    ) -> VectorIndex:
        """A new index over ``(ids, vectors)``, trained on them when approximate. With a
        memory ``budget`` the kind follows it; an on-disk index writes its files in
        ``folder`` (where it will be saved; a temporary folder if ``None``)."""
        plan = plan or plan_for(len(ids), dim, budget, kind)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if plan.ondisk:
            from clipfind.store.ondisk import build_from_arrays

            return build_from_arrays(cls, ids, vectors, plan, folder, generation)
        with omp_threads(os.cpu_count() or 1):  # k-means and adds use every core
            index = _new_faiss(plan, dim)
            _train(index, vectors, plan)
            if len(ids):
                index.add_with_ids(vectors, ids)
            if plan.kind != "flat" and len(ids):
                nprobe = tune_nprobe(index, ids, vectors, plan.nprobe) if tune else plan.nprobe
                plan = replace(plan, nprobe=nprobe)
                faiss.extract_index_ivf(index).nprobe = nprobe
        return cls(index, plan, generation)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def fits(self, n: int) -> bool:
        """Whether this index still suits a collection of ``n`` vectors; if not, build a
        new one (another kind, or IVF lists trained for the new size)."""
        if self.stale:
            return False
        if self.plan.budget:
            try:
                wanted = plan_for(n, self.dim, self.plan.budget)
            except StorageError:  # nothing fits: the rebuild says so
                return False
            if (wanted.kind, wanted.pq_bytes) != (self.kind, self.plan.pq_bytes):
                return False
        elif choose_kind(n) != choose_kind(self.plan.planned_for) and self.kind in ("flat", "ivf-sq8"):
            return False
        if self.kind == "flat":
            return True
        return self.plan.planned_for / GROWTH <= n <= self.plan.planned_for * GROWTH

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
        if self.refiner is not None:
            return self._search_refined(q, k, allowed)
        params = None
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            params = faiss.SearchParameters(sel=selector)
            if self.kind != "flat":
                params = faiss.SearchParametersIVF(sel=selector, nprobe=self._filtered_nprobe(len(allowed)))
        # One query is a few milliseconds of scanning: an OpenMP team costs more than it
        # saves, and spinning threads fight torch's for the cores.
        with self._lock, omp_threads(1):
            scores, ids = self.index.search(q, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _search_refined(self, q: npt.NDArray[np.float32], k: int,
                        allowed: npt.NDArray[np.int64] | None,
                        ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """On-disk IVF-PQ: candidates from the product codes, re-ranked (refine.py)."""
        assert self.refiner is not None
        selector = None if allowed is None else faiss.IDSelectorBatch(
            np.ascontiguousarray(allowed, dtype=np.int64))
        nprobe = self.plan.nprobe if allowed is None else self._filtered_nprobe(len(allowed))
        with self._lock, omp_threads(1):
            scores, ids = self.refiner.search(self.index, q, k, search_params(self.index, nprobe, selector))
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _filtered_nprobe(self, n_allowed: int) -> int:
        # A filter keeps a fraction f of the items: probe 1/f times more lists, so about
        # as many allowed candidates are scored as without a filter (all lists at worst).
        fraction = max(n_allowed / max(1, len(self)), 1e-9)
        return int(min(self.plan.nlist, math.ceil(self.plan.nprobe / fraction)))

    def add(self, ids: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]) -> None:
        """Insert or replace the vectors of ``ids``."""
        if not len(ids):
            return
        if self.plan.ondisk:  # its files may be mapped by other processes: rebuild instead
            self.stale = True
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            self._make_writable()
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids: npt.NDArray[np.int64]) -> None:
        if len(ids) and self.plan.ondisk:
            self.stale = True
        elif len(ids):
            with self._lock:
                self._make_writable()
                self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def reconstruct(self, item_id: int) -> npt.NDArray[np.float32]:
        """The stored (for IVF kinds: quantised) vector of ``item_id``."""
        if self.refiner is not None:
            return self.refiner.vector_of(int(item_id))
        with self._lock:
            if self.kind != "flat":
                self._make_writable()
                ivf = faiss.extract_index_ivf(self.index)
                if ivf.direct_map.type != faiss.DirectMap.Hashtable:
                    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            return self.index.reconstruct(int(item_id))

    def _make_writable(self) -> None:
        """A memory-mapped index is read-only: read the file into memory before changing it."""
        if self.mmapped and self.path is not None:
            self.index = faiss.read_index(str(self.path))
            self.mmapped = False

    # -- files -------------------------------------------------------------------
    def save(self, path: Path, newest: Callable[[], int | None] | None = None) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half. Several
        processes may share the collection folder (servers on one catalog, index runs on
        disjoint folders): each writes its own temporary files, and the index file and its
        sidecar change together, under an exclusive lock that loads take shared, so a load
        never pairs one process's index with another's generation. ``newest()`` reads the
        catalog's generation under that lock: a file saved meanwhile for a later generation
        than this index's (and not past the catalog's, so never one of a catalog restored
        from a backup) is newer than this one and stays."""
        path.parent.mkdir(parents=True, exist_ok=True)
        unique = f".{os.getpid()}.{threading.get_ident()}.tmp"
        tmp = path.with_name(path.name + unique)
        side = _sidecar(path)
        tmp_side = side.with_name(side.name + unique)
        meta = {"generation": self.generation, "count": len(self), **asdict(self.plan)}
        tag = None
        if self.data_file is not None:  # on-disk lists: the files live beside the index
            self.data_file = ondisk_files.move_into(self.index, self.data_file, path.parent)
            meta["files"] = tag = ondisk_files.tag_of(self.data_file)
        try:
            with self._lock:
                faiss.write_index(self.index, str(tmp))
            _fsync(tmp)
            tmp_side.write_text(json.dumps(meta))
            with _file_lock(path, fcntl.LOCK_EX):
                saved = _saved_meta(side)
                limit, theirs = newest() if newest is not None else None, saved.get("generation")
                if limit is not None and isinstance(theirs, int) and self.generation < theirs <= limit:
                    log.info("%s holds a newer generation; not replaced", path.name)
                    tmp.unlink()
                    tmp_side.unlink()
                    if tag and tag != saved.get("files"):  # this build's on-disk lists
                        ondisk_files.remove_files(path.parent, tag)
                    return
                old_tag = saved.get("files")
                os.replace(tmp, path)
                os.replace(tmp_side, side)
                if old_tag and old_tag != tag:  # the replaced index's on-disk files
                    ondisk_files.remove_files(path.parent, str(old_tag))
        except BaseException:  # disk full, a folder in the way: leave no half file behind
            tmp.unlink(missing_ok=True)
            tmp_side.unlink(missing_ok=True)
            raise
        self.path = path

    @classmethod
    def load(cls, path: Path, mmap: bool | None = None) -> VectorIndex | None:
        """The saved index, or ``None`` when it is missing or unreadable. ``mmap=None``
        memory-maps files over :data:`MMAP_BYTES`: pages are read as searches touch them."""
        side = _sidecar(path)
        if not path.is_file() or not side.is_file():
            return None
        try:
            with _file_lock(path, fcntl.LOCK_SH):  # the pair one save wrote, not two
                meta = json.loads(side.read_text())
                if mmap is None:
                    mmap = path.stat().st_size > MMAP_BYTES
                flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
                refiner = data_file = None
                if meta.get("ondisk"):
                    index, refiner = ondisk_files.load(path, str(meta["files"]))
                    data_file, mmap = path.parent / f"{meta['files']}.ivfdata", True
                else:
                    index = faiss.read_index(str(path), flags)
        except (OSError, RuntimeError, ValueError, KeyError):
            return None
        plan = IndexPlan(meta.get("kind", "flat"), int(meta.get("nlist", 0)),
                         int(meta.get("nprobe", 0)), int(meta.get("planned_for", meta.get("count", 0))),
                         int(meta.get("budget", 0)), int(meta.get("pq_bytes", 0)), bool(meta.get("ondisk")))
        return cls(index, plan, int(meta.get("generation", -1)), path, mmap, data_file, refiner)


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _saved_meta(side: Path) -> dict[str, object]:
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


@contextmanager
def _file_lock(path: Path, mode: int) -> Iterator[None]:
    """``flock`` on ``path``'s lock file beside it (never the index file itself: that is
    replaced, and a lock on a replaced file guards nothing). In a read-only folder, where
    nothing can save either, a load goes ahead unlocked."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if mode != fcntl.LOCK_SH:
            raise
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            yield
            return
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
