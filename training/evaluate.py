"""How good are the answers? Retrieval recall, zero-shot accuracy, index recall.

* :func:`evaluate_retrieval`: recall@1/5/10 text → image and image → text on a
  captions dataset, counted as CLIP_benchmark counts it (an image with several
  captions is one image; see :mod:`clipfind.training.metrics`).
* :func:`evaluate_zero_shot`: top-1 / top-5 and per-class accuracy, each class's text
  vector the normalised mean of its prompt templates' vectors (CLIP's recipe).
* :func:`evaluate_index`: recall@k of the collection's FAISS index against exact search
  over the catalog's vectors (ties at the k-th score count as found).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder
from clipfind.errors import ImageDecodeError, QueryError
from clipfind.imageio import load_image
from clipfind.templates import fill
from clipfind.training.data import CaptionPairs, Labelled
from clipfind.training.metrics import recall_at_k

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RetrievalReport:
    images: int
    captions: int
    recall: dict[str, float]  # "text_to_image_R@1" ... "image_to_text_R@10"
    skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"task": "retrieval", **asdict(self)}


@dataclass(frozen=True)
class ZeroShotReport:
    images: int
    classes: int
    top1: float
    top5: float
    per_class: dict[str, float]  # top-1 accuracy (recall) of each class
    templates: int
    skipped: int = 0

    @property
    def mean_per_class(self) -> float:
        return float(np.mean(list(self.per_class.values()))) if self.per_class else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"task": "zeroshot", **asdict(self), "mean_per_class": self.mean_per_class}


@dataclass(frozen=True)
class IndexReport:
    kind: str
    vectors: int
    queries: int
    k: int
    recall: float

    def as_dict(self) -> dict[str, Any]:
        return {"task": "index", **asdict(self)}


def encode_files(encoder: Encoder, paths: Sequence[Path], batch_size: int = 64,
                 progress: Progress | None = None) -> tuple[Vectors, list[int]]:
    """Vectors of the decodable images among ``paths`` and their positions."""
    rows: list[Vectors] = []
    kept: list[int] = []
    for start in range(0, len(paths), batch_size):
        images = []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                images.append(load_image(paths[i], target_size=encoder.image_size).image)
                kept.append(i)
            except ImageDecodeError as exc:
                log.warning("skipping %s", exc)
        if images:
            rows.append(encoder.encode_images(images))
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    dim = rows[0].shape[1] if rows else 0
    return (np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)), kept


def evaluate_retrieval(encoder: Encoder, pairs: CaptionPairs, ks: Sequence[int] = (1, 5, 10),
                       batch_size: int = 64, progress: Progress | None = None) -> RetrievalReport:
    """Recall@k both ways; captions of the same image file share that image."""
    unique: dict[Path, int] = {}
    owner = [unique.setdefault(p.image, len(unique)) for p in pairs.pairs]
    paths = list(unique)
    image_vecs, kept = encode_files(encoder, paths, batch_size, progress)
    if not kept:
        raise QueryError("no image of the dataset could be decoded")
    row_of = {old: new for new, old in enumerate(kept)}
    keep_caps = [j for j, o in enumerate(owner) if o in row_of]
    texts = [pairs.caption(j) for j in keep_caps]
    text_vecs = encoder.encode_texts(texts)
    recall = recall_at_k(image_vecs, text_vecs, [row_of[owner[j]] for j in keep_caps], ks)
    return RetrievalReport(len(kept), len(keep_caps), recall, len(paths) - len(kept))


def class_vectors(encoder: Encoder, classes: Sequence[str], templates: Sequence[str]) -> Vectors:
    """One unit vector per class: the mean of its normalised prompt vectors."""
    out = []
    for name in classes:
        vecs = encoder.encode_texts(fill(list(templates), name))
        mean = vecs.mean(axis=0)
        out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return np.stack(out).astype(np.float32)


def zero_shot_scores(image_vecs: Vectors, class_vecs: Vectors, labels: Sequence[int],
                     class_names: Sequence[str]) -> tuple[float, float, dict[str, float]]:
    """``(top1, top5, per-class top-1)`` from vectors; ties go to the earlier class."""
    scores = image_vecs @ class_vecs.T
    order = np.argsort(-scores, axis=1, kind="stable")
    truth = np.asarray(labels)
    top1_hit = order[:, 0] == truth
    top5_hit = (order[:, :5] == truth[:, None]).any(axis=1)
    per_class = {name: float(top1_hit[truth == c].mean())
                 for c, name in enumerate(class_names) if (truth == c).any()}
    return float(top1_hit.mean()), float(top5_hit.mean()), per_class


def evaluate_zero_shot(encoder: Encoder, data: Labelled, templates: Sequence[str],
                       batch_size: int = 64, progress: Progress | None = None) -> ZeroShotReport:
    """Classify every image among the dataset's classes by prompt similarity."""
    classes = data.classes
    if len(classes) < 2:
        raise QueryError("zero-shot evaluation needs at least two classes")
    class_vecs = class_vectors(encoder, classes, templates)
    image_vecs, kept = encode_files(encoder, data.paths, batch_size, progress)
    if not kept:
        raise QueryError("no image of the dataset could be decoded")
    index = {c: i for i, c in enumerate(classes)}
    labels = [index[data.labels[i]] for i in kept]
    top1, top5, per_class = zero_shot_scores(image_vecs, class_vecs, labels, classes)
    return ZeroShotReport(len(kept), len(classes), top1, top5, per_class, len(templates),
                          len(data.paths) - len(kept))


def evaluate_index(collection: Any, k: int = 10, queries: int = 200, kind: str | None = None,
                   seed: int = 0) -> IndexReport:
    """Recall@k of approximate search against exact search, with ``queries`` of the
    collection's own vectors as queries. ``kind`` builds an index of that kind over the
    same vectors instead of using the collection's own (e.g. ``ivf-sq8`` on a
    collection small enough to be ``flat``)."""
    from clipfind.store.vectors import VectorIndex

    id_chunks, vec_chunks = [], []
    for ids, vecs in collection.catalog.iter_vectors():
        id_chunks.append(ids)
        vec_chunks.append(vecs)
    if not id_chunks or not sum(len(c) for c in id_chunks):
        raise QueryError("the collection has no vectors; index some images first")
    ids, vecs = np.concatenate(id_chunks), np.concatenate(vec_chunks).astype(np.float32)
    index = collection.vector_index() if kind is None else VectorIndex.build(ids, vecs, vecs.shape[1], kind)
    k = max(1, min(k, len(ids)))
    picks = np.random.default_rng(seed).permutation(len(ids))[: max(1, queries)]
    order = np.argsort(ids, kind="stable")
    found = [_overlap(index, ids[order], vecs[order], vecs[q], k) for q in picks]
    return IndexReport(index.kind, len(ids), len(picks), k, float(np.mean(found)))


def _overlap(index: Any, sorted_ids: npt.NDArray[np.int64], vecs: Vectors, query: Vectors, k: int) -> float:
    """Share of the approximate top-k that belongs to an exact top-k. A hit counts when
    its exact score reaches the exact k-th score: among tied vectors any is correct."""
    exact = vecs @ query
    kth = np.partition(exact, -k)[-k]
    _, approx_ids = index.search(query, k)
    pos = np.searchsorted(sorted_ids, approx_ids)
    valid = (pos < len(sorted_ids)) & (sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] == approx_ids)
    hits = int(np.sum(exact[pos[valid]] >= kth - 1e-5))
    return hits / k
