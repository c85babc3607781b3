"""The writer stage: one transaction per batch, so an interrupted run (Ctrl-C,
``kill -9``) keeps every finished batch and the next run resumes after it. Paths are
unique in the catalog, so no file is ever stored twice."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clipfind.indexer.prepare import CHANGED, DUPLICATE, MOVED, NEW, SKIPPED, TOUCHED, Prepared
from clipfind.store.catalog import Catalog, vector_to_bytes
from clipfind.store.collection import IndexChanges
from clipfind.store.writes import ItemWrite, ItemWriter, item_writes, remove_items

_DONOR_GONE = "vector source disappeared; re-run index"


def write_batch(
    catalog: Catalog,
    batch: list[Prepared],
    vectors: npt.NDArray[np.float32] | None,
) -> IndexChanges:
    """Store a batch of prepared files; ``vectors`` rows match the batch's decoded
    (NEW/CHANGED) entries in order. Returns what changed for the FAISS index."""
    vec_iter = iter(vectors if vectors is not None else ())
    with item_writes(catalog) as w:
        for p in batch:
            if p.action in (NEW, CHANGED):
                w.store(_write(p, p.info), vector_to_bytes(next(vec_iter)))
            elif p.action == SKIPPED:
                w.store(_write(p, p.info), None, p.reason)
            elif p.action == DUPLICATE:
                _duplicate(w, p)
            elif p.action == TOUCHED:
                w.touch(p.existing_id, p.entry.size, p.entry.mtime_ns)  # type: ignore[arg-type]
            elif p.action == MOVED:
                w.move(p.source_id, p.entry.path, p.entry.size, p.entry.mtime_ns)  # type: ignore[arg-type]
        return w.changes()


def _duplicate(w: ItemWriter, p: Prepared) -> None:
    # an earlier item's vector as planned, or (a repeat within this run) the vector its
    # first file just got; read by content, never by a row id
    donor = p.donor or w.first_with_content(p.content_hash)
    if donor is None or donor.vector is None:  # the donor vanished: skip, retry next run
        p.reason, p.retry = _DONOR_GONE, True
        w.store(_write(p, p.info), None, p.reason)
        return
    w.store(_write(p, p.info if p.info is not None else donor), donor.vector)


def _write(p: Prepared, facts: object) -> ItemWrite:
    # A skip for a passing reason records no mtime, so the next run sees a changed file.
    return ItemWrite(p.entry.path, p.entry.size, -1 if p.retry else p.entry.mtime_ns,
                     p.content_hash, p.existing_id, facts)


def remove_missing(catalog: Catalog, ids: list[int]) -> IndexChanges | None:
    """Delete items (files gone, or forgotten); ``None`` when there was nothing to do."""
    if not ids:
        return None
    return remove_items(catalog, ids)
