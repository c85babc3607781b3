"""The writer stage: one transaction per batch, so an interrupted run (Ctrl-C,
``kill -9``) keeps every finished batch and the next run resumes after it. Paths are
unique in the catalog, so no file is ever stored twice."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from clipfind.indexer.prepare import CHANGED, DUPLICATE, MOVED, NEW, SKIPPED, TOUCHED, Prepared
from clipfind.store.catalog import Catalog, VectorSource, vector_to_bytes
from clipfind.store.collection import IndexChanges
from clipfind.store.schema import STATUS_OK, STATUS_SKIPPED, Item


def write_batch(
    catalog: Catalog,
    batch: list[Prepared],
    vectors: npt.NDArray[np.float32] | None,
) -> IndexChanges:
    """Store a batch of prepared files; ``vectors`` rows match the batch's decoded
    (NEW/CHANGED) entries in order. Returns what changed for the FAISS index."""
    vec_iter = iter(vectors if vectors is not None else ())
    now = datetime.now()
    touched: list[Item] = []
    with catalog.session() as session:
        for p in batch:
            if p.action in (NEW, CHANGED):
                touched.append(_upsert(session, p, STATUS_OK, vector_to_bytes(next(vec_iter)), now))
            elif p.action == SKIPPED:
                touched.append(_upsert(session, p, STATUS_SKIPPED, None, now))
            elif p.action == DUPLICATE:
                # an earlier item's vector as planned, or (a repeat within this run) the
                # vector its first file just got; read by content, never by a row id
                donor = p.donor or _donor_by_hash(session, p.content_hash)
                touched.append(_upsert(session, p, STATUS_OK, donor.vector if donor else None,
                                       now, donor))
            elif p.action == TOUCHED:
                row = session.get(Item, p.existing_id)
                row.size, row.mtime_ns = p.entry.size, p.entry.mtime_ns
            elif p.action == MOVED:
                _move(session, p)
        session.flush()  # new rows get their ids
        upserts = {r.id: r.vector for r in touched if r.status == STATUS_OK and r.vector}
        removed = tuple(r.id for r in touched if r.id not in upserts)
        generation = catalog.bump_generation(session)
    return IndexChanges(generation, upserts, removed)


def _donor_by_hash(session: Session, content_hash: str | None) -> Item | None:
    """The first indexed item with this content: a file earlier in this run, already
    written (same batch or an earlier one), whose vector a duplicate reuses."""
    if content_hash is None:
        return None
    return session.scalar(
        select(Item).where(Item.content_hash == content_hash, Item.status == STATUS_OK,
                           Item.vector.is_not(None)).order_by(Item.id).limit(1)
    )


def _upsert(
    session: Session,
    p: Prepared,
    status: str,
    vector: bytes | None,
    now: datetime,
    donor: Item | VectorSource | None = None,
) -> Item:
    row = session.get(Item, p.existing_id) if p.existing_id else None
    if row is None:
        row = session.scalar(select(Item).where(Item.path == p.entry.path))
    if row is None:
        row = Item(path=p.entry.path)
        session.add(row)
    if status == STATUS_OK and vector is None:  # duplicate whose donor vanished
        status, p.reason, p.retry = STATUS_SKIPPED, "vector source disappeared; re-run index", True
    info = p.info
    # A skip for a passing reason records no mtime, so the next run sees a changed file.
    row.size, row.mtime_ns = p.entry.size, (-1 if p.retry else p.entry.mtime_ns)
    row.content_hash = p.content_hash
    row.status, row.skip_reason = status, (p.reason if status == STATUS_SKIPPED else None)
    row.vector = vector
    row.indexed_at = now
    if info is not None:
        row.width, row.height = info.width, info.height
        row.taken_at, row.camera, row.format = info.taken_at, info.camera, info.format
    elif donor is not None:
        row.width, row.height = donor.width, donor.height
        row.taken_at, row.camera, row.format = donor.taken_at, donor.camera, donor.format
    elif status == STATUS_SKIPPED:
        row.width = row.height = row.taken_at = row.camera = row.format = None
    return row


def _move(session: Session, p: Prepared) -> None:
    row = session.get(Item, p.source_id)
    if row is None:  # the old row was removed meanwhile: nothing to keep
        return
    row.path = p.entry.path
    row.size, row.mtime_ns = p.entry.size, p.entry.mtime_ns


def remove_missing(catalog: Catalog, ids: list[int]) -> IndexChanges | None:
    """Delete items (files gone, or forgotten); ``None`` when there was nothing to do."""
    if not ids:
        return None
    with catalog.session() as session:
        catalog.delete_items(session, ids)
        generation = catalog.bump_generation(session)
    return IndexChanges(generation, removed=tuple(ids))
