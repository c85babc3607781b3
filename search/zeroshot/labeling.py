"""Label a whole collection from its stored vectors, and read the label sets back.

``label_collection`` never decodes an image: it streams ``(ids, vectors)`` from the
catalog in chunks, scores each chunk against the label vectors with one matrix product
(``search.scoring``, the same code ``classify`` runs), keeps the labels each item is
given, and replaces the named label set in one transaction at the end, so readers see
the old set or the new one, never half.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipfind.encoding import Encoder
from clipfind.errors import QueryError
from clipfind.search.filters import Filters, allowed_ids
from clipfind.search.zeroshot.prompts import DEFAULT_BACKGROUND, prompt_vectors
from clipfind.search.zeroshot.scoring import Scorer, cosines, pick
from clipfind.store.labels import LabelAssignments, LabelRow, LabelSetInfo

DEFAULT_SET = "default"
CHUNK = 16_384


@dataclass(frozen=True)
class LabelRunSummary:
    name: str
    model: str
    mode: str
    labels: list[str]
    scored: int
    labelled: int
    counts: dict[str, int]
    seconds: float

    @property
    def none_of_these(self) -> int:
        return self.scored - self.labelled

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "none_of_these": self.none_of_these}


def label_collection(
    collection: Any,
    encoder: Encoder,
    labels: Sequence[str],
    name: str = DEFAULT_SET,
    templates: str | Path | Sequence[str] | None = None,
    multi_label: bool = False,
    threshold: float | None = None,
    top: int | None = None,
    path: str | None = None,
    background: Sequence[str] | None = DEFAULT_BACKGROUND,
    chunk: int = CHUNK,
    progress: Callable[[int, int], None] | None = None,
) -> LabelRunSummary:
    """Score every indexed item (or those under ``path``) and store the labels they are
    given as the set ``name``, replacing an earlier set of that name. ``top``: labels
    per item (default 1, or every accepted label with ``multi_label``)."""
    name = _check_name(name)
    if top is not None and top < 1:
        raise QueryError("--top must be at least 1")
    if top is None and not multi_label:
        top = 1
    # A label set points at items: an index run that removes or re-encodes items meanwhile
    # would leave labels of gone rows (a foreign-key error) or of old vectors, so a label
    # run claims every item, like a re-embed (CollectionBusyError while one writes).
    with collection.writing(what="label run"):
        # `labels delete NAME` meanwhile: the run stores nothing and says so (replace_set)
        before = collection.catalog.labels.identity(name)
        collection.bind_model(encoder)  # the label vectors must live in the items' space
        prompts = prompt_vectors(encoder, labels, templates, background)
        scorer = Scorer.for_model(encoder, multi_label)
        started = time.perf_counter()
        scored, (item_ids, cols, vals, ranks) = _score_all(
            collection.catalog, path, chunk,
            lambda v: pick(cosines(v, prompts, scorer), scorer, top, threshold), progress,
            lambda: collection.catalog.labels.check_unchanged(name, before))
        params = {"mode": scorer.mode.value, "threshold": threshold, "top": top,
                  "multi_label": multi_label, "path": path, "background": list(prompts.background),
                  "scored": scored}
        model = collection.stored_model or getattr(encoder, "spec", "")
        collection.catalog.labels.replace_set(name, prompts.labels, prompts.templates, model, params,
                                              LabelAssignments(item_ids, cols, vals, ranks),
                                              expect=before)
    counts = np.bincount(cols.astype(np.int64), minlength=len(prompts.labels))
    return LabelRunSummary(
        name, model, scorer.mode.value, list(prompts.labels), scored,
        len(np.unique(item_ids)), {lb: int(c) for lb, c in zip(prompts.labels, counts, strict=True)},
        round(time.perf_counter() - started, 3),
    )


def _score_all(catalog: Any, path: str | None, chunk: int, pick_chunk: Callable[[Any], tuple],
               progress: Callable[[int, int], None] | None,
               check: Callable[[], None] = lambda: None) -> tuple[int, tuple[np.ndarray, ...]]:
    """Run ``pick_chunk`` over every chunk of stored vectors; concatenated results.
    ``check`` runs before each chunk after the first (it raises to stop the run)."""
    parts: list[tuple[np.ndarray, ...]] = []
    scored, total = 0, catalog.count()
    with closing(_vectors(catalog, path, chunk)) as chunks:  # a stop ends the reader now
        for ids, vecs in chunks:
            if parts:
                check()
            rows, cols, vals, ranks = pick_chunk(vecs)
            parts.append((ids[rows], cols, vals.astype(np.float32), ranks))
            scored += len(ids)
            if progress:
                progress(scored, total)
    if not parts:
        empty = np.zeros(0, np.int64)
        return 0, (empty, empty, np.zeros(0, np.float32), empty)
    return scored, tuple(np.concatenate(col) for col in zip(*parts, strict=True))


def _check_name(name: str) -> str:
    from clipfind.search.zeroshot.names import check_set_name

    return check_set_name(name)


def _prefetched(chunks: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    """Read the next chunk from the catalog in a thread while this one is scored
    (SQLite and BLAS both release the GIL, so reading and the matrix product overlap)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=2)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in chunks:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    worker = threading.Thread(target=produce, name="label-reader", daemon=True)
    worker.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)


def _vectors(catalog: Any, path: str | None, chunk: int) -> Iterator[tuple[Any, Any]]:
    yield from _prefetched(_read_vectors(catalog, path, chunk))


def _read_vectors(catalog: Any, path: str | None, chunk: int) -> Iterator[tuple[Any, Any]]:
    if not path:
        yield from catalog.iter_vectors(chunk)
        return
    wanted = allowed_ids(catalog, Filters(path=path))
    for start in range(0, len(wanted), chunk):
        ids, vecs = catalog.vectors_for(wanted[start : start + chunk].tolist())
        if len(ids):
            yield ids, vecs


# -- reading: the store's label sets, under the names callers know ---------------------
def label_set_summary(catalog: Any, name: str) -> LabelSetInfo:
    """A label set's definition and how many items got each label."""
    return catalog.labels.summary(name)


def list_label_sets(catalog: Any) -> list[LabelSetInfo]:
    return catalog.labels.list_sets()


def delete_label_set(catalog: Any, name: str) -> None:
    catalog.labels.delete_set(name)


def label_rows(catalog: Any, name: str) -> list[LabelRow]:
    """Every stored label of the set, by item id then rank."""
    return catalog.labels.rows(name)
