"""Building an IVF-PQ index whose inverted lists live on disk, in parallel, as autofaiss
and faiss's ``bench_all_ivf``/``contrib.ondisk`` do it: the coarse quantiser, the OPQ
rotation and the product codebooks are trained once on a sample; the vectors are added
chunk by chunk in separate processes, each writing a small shard index; the shards'
inverted lists are merged into one ``.ivfdata`` file (:func:`faiss.contrib.ondisk.
merge_ondisk`), which searches memory-map. The same pass computes exact neighbours of a
held-out tuning sample, so ``nprobe`` is tuned for recall against exact search as for an
in-memory index, without a second read of the vectors.

Vectors come from a :class:`VectorSource` that worker processes can rebuild from a few
picklable fields: the catalog (each worker opens it), an ``.npy`` file, or a generator.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import faiss
import numpy as np
import numpy.typing as npt
from faiss.contrib.clustering import two_level_clustering
from faiss.contrib.ondisk import merge_ondisk

from clipfind.store.build_workers import Clock, worker_pool
from clipfind.store.refine import Refiner, new_quantizer
from clipfind.store.vector_tuning import K, tune_nprobe_with, tuning_queries

if TYPE_CHECKING:
    from clipfind.store.vectors import IndexPlan, VectorIndex

log = logging.getLogger(__name__)

HNSW_FROM = 1024  # lists from which the coarse quantiser is an HNSW graph (autofaiss: 1000)
TRAIN_PER_LIST = 32  # k-means points a list: stable centroids, bounded training time
PQ_TRAIN = 65_536  # points for the OPQ rotation and the product codebooks
MAX_TUNE_PROBE = 512  # most lists the nprobe tuning probes

Ids = npt.NDArray[np.int64]
Vecs = npt.NDArray[np.float32]


class VectorSource(Protocol):
    """Where a sharded build reads vectors: ``chunk(i)`` for ``i < chunks()``, in any
    order and in any process, and a training ``sample``."""

    dim: int
    size: int  # vectors a chunk (the last may hold fewer)

    def count(self) -> int: ...

    def chunks(self) -> int: ...

    def chunk(self, i: int) -> tuple[Ids, Vecs]: ...

    def sample(self, n: int) -> tuple[Ids, Vecs]: ...


@dataclass(frozen=True)
class NpySource:
    """Vectors in an ``.npy`` file (memory-mapped by each worker) and their ids."""

    vectors: str
    ids: str
    dim: int
    size: int = 131_072

    def _arrays(self) -> tuple[Ids, Vecs]:
        return np.load(self.ids, mmap_mode="r"), np.load(self.vectors, mmap_mode="r")

    def count(self) -> int:
        return len(self._arrays()[0])

    def chunks(self) -> int:
        return -(-self.count() // self.size)

    def chunk(self, i: int) -> tuple[Ids, Vecs]:
        ids, vecs = self._arrays()
        part = slice(i * self.size, (i + 1) * self.size)
        return np.array(ids[part], np.int64), np.array(vecs[part], np.float32)

    def sample(self, n: int) -> tuple[Ids, Vecs]:
        ids, vecs = self._arrays()
        rows = _sample_rows(len(ids), n)
        return np.array(ids[rows], np.int64), np.array(vecs[rows], np.float32)


def _sample_rows(total: int, n: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(total, min(n, total), replace=False))


def factory_key(dim: int, nlist: int, pq_bytes: int, opq: bool = False) -> str:
    """The faiss factory string (autofaiss's shape): an optional OPQ rotation, IVF with
    an HNSW quantiser for many lists, ``pq_bytes`` 8-bit codes a vector."""
    quantiser = f"IVF{nlist}_HNSW32" if nlist >= HNSW_FROM else f"IVF{nlist}"
    return f"{f'OPQ{pq_bytes}_{dim},' if opq else ''}{quantiser},PQ{pq_bytes}x8"


def train_index(
    source: VectorSource, nlist: int, pq_bytes: int, opq: bool = False
) -> tuple[faiss.Index, Ids, Vecs]:
    """An empty index trained on a sample of ``source``; the sample is returned too.
    Many lists are trained by two-level k-means (faiss's ``bench_all_ivf`` way): a
    sqrt(nlist)-way k-means, then each part split on its own, which costs a small
    fraction of one nlist-way k-means over the same points."""
    clock = Clock()
    ids, sample = source.sample(max(nlist * TRAIN_PER_LIST, PQ_TRAIN))
    clock.lap("sample")
    index = faiss.index_factory(
        source.dim, factory_key(source.dim, nlist, pq_bytes, opq), faiss.METRIC_INNER_PRODUCT
    )
    xt = np.ascontiguousarray(sample, np.float32)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if isinstance(index, faiss.IndexPreTransform):  # the OPQ rotation
        for i in range(index.chain.size()):
            transform = index.chain.at(i)
            transform.train(xt[:PQ_TRAIN])
            xt = transform.apply(xt)
        clock.lap("rotation")
    if nlist >= HNSW_FROM:
        centroids, _ = two_level_clustering(
            xt, int(np.sqrt(nlist)), nlist, clustering_niter=10, spherical=True, seed=1
        )
        ivf.quantizer.add(np.ascontiguousarray(centroids, np.float32))
        clock.lap("lists")
    else:
        ivf.cp.spherical = True  # centroids on the sphere, like the vectors
        ivf.cp.niter = 10
        ivf.cp.min_points_per_centroid = 16
        ivf.cp.max_points_per_centroid = TRAIN_PER_LIST
    ivf.pq.cp.max_points_per_centroid = PQ_TRAIN // 256
    ivf.do_polysemous_training = False  # (its Hamming pre-filter is not used; it costs minutes)
    ivf.train(xt)  # the lists (unless set above), then the product codebooks
    index.is_trained = True
    clock.lap("codebooks" if nlist >= HNSW_FROM else "lists and codebooks")
    log.info("on-disk index trained: %s", clock)
    return index, ids, sample


Task = tuple[VectorSource, str, int, str, Vecs, tuple[str, str, str]]


def _add_chunk(task: Task) -> tuple[int, Vecs, Ids, dict[str, float]]:
    """(In a worker process.) Add chunk ``i`` to a copy of the trained index, save it as
    a shard, write its ids and scalar codes at its rows of the refinement files, and
    return its size, the tuning queries' exact top-(K+1) in it and the seconds each
    step took."""
    source, trained, i, shard, queries, (sq_path, ids_path, codes_path) = task
    faiss.omp_set_num_threads(1)  # one process a core
    clock = Clock()
    ids, vecs = source.chunk(i)
    vecs = np.ascontiguousarray(vecs, np.float32)
    clock.lap("read")
    index = faiss.read_index(trained)
    if len(ids):
        index.add_with_ids(vecs, np.ascontiguousarray(ids))
        clock.lap("add")
        start = i * source.size
        id_map = np.memmap(ids_path, dtype=np.int64, mode="r+")
        id_map[start : start + len(ids)] = ids
        id_map.flush()
        codes = faiss.read_index(sq_path).sa_encode(vecs)
        code_map = np.memmap(codes_path, dtype=np.uint8, mode="r+").reshape(len(id_map), -1)
        code_map[start : start + len(ids)] = codes
        code_map.flush()
        del id_map, code_map
        clock.lap("refine codes")
    faiss.write_index(index, shard)
    clock.lap("write")
    scores, found = (
        faiss.knn(
            queries,
            np.ascontiguousarray(vecs, np.float32),
            min(K + 1, max(1, len(ids))),
            metric=faiss.METRIC_INNER_PRODUCT,
        )
        if len(ids)
        else (None, None)
    )
    clock.lap("exact")
    if scores is None:
        empty = np.full((len(queries), 0), -np.inf, np.float32), np.zeros((len(queries), 0), np.int64)
        return 0, *empty, clock.laps
    return len(ids), scores, ids[found], clock.laps


def _tasks(
    source: VectorSource, trained: str, folder: Path, tag: str, queries: Vecs, refine: tuple[str, str, str]
) -> Iterator[Task]:
    for i in range(source.chunks()):
        yield source, trained, i, str(folder / f"{tag}.shard{i}.faiss"), queries, refine


@dataclass(frozen=True)
class OnDiskBuild:
    """A built index, the ``.ivfdata`` file its lists live in, the refinement files
    (scalar quantiser, sorted ids, codes) and its tuned ``nprobe``."""

    index: faiss.Index
    data_file: Path
    refine_files: tuple[Path, Path, Path]
    nprobe: int
    count: int
    extra_truth: Ids


def build_ondisk(
    source: VectorSource,
    nlist: int,
    pq_bytes: int,
    folder: Path,
    workers: int | None = None,
    start_nprobe: int = 1,
    extra: Vecs | None = None,
    opq: bool = False,
) -> OnDiskBuild:
    """Train, add ``source``'s chunks in ``workers`` processes, merge into
    ``folder/<unique>.ivfdata``, and tune ``nprobe`` against exact search. The exact
    top-10 ids of ``extra`` queries, if given, come back in ``extra_truth``."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    trained_path = folder / f"{tag}.trained.faiss"
    data_file = folder / f"{tag}.ivfdata"
    workers = max(1, min(workers or os.cpu_count() or 1, source.chunks()))
    clock, work = Clock(), Clock()
    index, sample_ids, sample = train_index(source, nlist, pq_bytes, opq)
    clock.lap("train")
    queries, own = tuning_queries(sample_ids, sample)
    n_tune = len(queries)
    if extra is not None:
        queries = np.ascontiguousarray(np.concatenate([queries, extra]), np.float32)
        own = np.concatenate([own, np.full(len(extra), -1, np.int64)])
    faiss.write_index(index, str(trained_path))
    refine_files = (folder / f"{tag}.sq.faiss", folder / f"{tag}.ids", folder / f"{tag}.codes")
    faiss.write_index(new_quantizer(source.dim, sample[:PQ_TRAIN]), str(refine_files[0]))
    total = source.count()
    with open(refine_files[1], "wb") as f:
        f.truncate(total * 8)
    with open(refine_files[2], "wb") as f:
        f.truncate(total * source.dim)
    clock.lap("train refine")
    shards: list[str] = []
    try:
        best_s = np.full((len(queries), 0), -np.inf, np.float32)
        best_i = np.zeros((len(queries), 0), np.int64)
        count = 0
        tasks = list(
            _tasks(
                source,
                str(trained_path),
                folder,
                tag,
                queries,
                (str(refine_files[0]), str(refine_files[1]), str(refine_files[2])),
            )
        )
        with worker_pool(workers) as pool:
            for task, (n, scores, ids, laps) in zip(tasks, pool.imap(_add_chunk, tasks), strict=True):
                shards.append(task[3])
                count += n
                best_s, best_i = _merge_top(best_s, best_i, scores, ids)
                work.add(laps)
                log.info("on-disk index: %d vectors added", count)
        clock.lap("add")
        log.info("on-disk index: worker seconds: %s", work)
        merge_ondisk(index, shards, str(data_file))
        clock.lap("merge")
        refiner = Refiner.open(*refine_files)
        if count != total or np.any(np.diff(refiner.ids) <= 0):
            raise ValueError("a vector source must give its count of ids, in ascending order")
        truth = _drop_own(best_i, own)
        nprobe = tune_nprobe_with(
            index,
            queries[:n_tune],
            truth[:n_tune],
            start_nprobe,
            ceiling=MAX_TUNE_PROBE,
            search=refiner.search,
        )
        clock.lap("tune")
        log.info("on-disk index built: %s", clock)
    except BaseException:
        for path in (data_file, *refine_files):
            path.unlink(missing_ok=True)
        raise
    finally:
        for path in [*shards, str(trained_path)]:
            Path(path).unlink(missing_ok=True)
    return OnDiskBuild(index, data_file, refine_files, nprobe, count, truth[n_tune:])


def _merge_top(best_s: Vecs, best_i: Ids, scores: Vecs, ids: Ids) -> tuple[Vecs, Ids]:
    s = np.concatenate([best_s, scores], axis=1)
    i = np.concatenate([best_i, ids], axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, : K + 1]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def _drop_own(found: Ids, own: Ids) -> Ids:
    """Top-K ids without each query's own item (``own`` = -1 for moved queries)."""
    out = np.empty((len(found), K), np.int64)
    for row, (ids, me) in enumerate(zip(found, own, strict=True)):
        keep = ids[ids != me]
        out[row] = keep[:K]
    return out


def build_from_arrays(
    cls: type[VectorIndex], ids: Ids, vectors: Vecs, plan: IndexPlan, folder: Path | None, generation: int
) -> VectorIndex:
    """An on-disk :class:`VectorIndex` over in-memory arrays: they are written to a
    scratch ``.npy`` pair (sorted by id) that the worker processes map."""
    if len(ids) < max(plan.nlist * 4, K + 2):
        raise ValueError(f"{len(ids)} vectors are too few for an on-disk index of {plan.nlist} lists")
    folder = folder or Path(tempfile.mkdtemp(prefix="clipfind-index-"))
    order = np.argsort(ids, kind="stable")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".arrays-") as scratch:
        np.save(Path(scratch) / "ids.npy", ids[order])
        np.save(Path(scratch) / "vectors.npy", vectors[order])
        here = Path(scratch)
        source = NpySource(str(here / "vectors.npy"), str(here / "ids.npy"), vectors.shape[1])
        built = build_ondisk(source, plan.nlist, plan.pq_bytes, folder, start_nprobe=plan.nprobe)
    refiner = Refiner.open(*built.refine_files)
    return cls(
        built.index, replace(plan, nprobe=built.nprobe), generation, None, True, built.data_file, refiner
    )
