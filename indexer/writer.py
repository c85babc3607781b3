"""The writer stage: one transaction per batch, so an interrupted run (Ctrl-C,
``kill -9``) keeps every finished batch and the next run resumes after it. Paths are
unique in the catalog, so no file is ever stored twice."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from clipfind.store.catalog import Catalog, vector_to_bytes
from clipfind.store.schema import STATUS_OK, STATUS_SKIPPED, Item
from indexer.prepare import CHANGED, DUPLICATE, MOVED, NEW, SKIPPED, TOUCHED, Prepared


def write_batch(
    catalog: Catalog,
    batch: list[Prepared],
    vectors: npt.NDArray[np.float32] | None,
) -> None:
    """Store a batch of prepared files; ``vectors`` rows match the batch's decoded
    (NEW/CHANGED) entries in order."""
    vec_iter = iter(vectors if vectors is not None else ())
    now = datetime.now()
    with catalog.session() as session:
        for p in batch:
            if p.action in (NEW, CHANGED):
                _upsert(session, p, STATUS_OK, vector_to_bytes(next(vec_iter)), now)
            elif p.action == SKIPPED:
                _upsert(session, p, STATUS_SKIPPED, None, now)
            elif p.action == DUPLICATE:
                donor = session.get(Item, p.source_id)
                _upsert(session, p, STATUS_OK, donor.vector if donor else None, now, donor)
            elif p.action == TOUCHED:
                row = session.get(Item, p.existing_id)
                row.size, row.mtime_ns = p.entry.size, p.entry.mtime_ns
            elif p.action == MOVED:
                _move(session, p)
        catalog.bump_generation(session)


def _upsert(
    session: Session,
    p: Prepared,
    status: str,
    vector: bytes | None,
    now: datetime,
    donor: Item | None = None,
) -> None:
    row = session.get(Item, p.existing_id) if p.existing_id else None
    if row is None:
        row = session.scalar(select(Item).where(Item.path == p.entry.path))
    if row is None:
        row = Item(path=p.entry.path)
        session.add(row)
    if status == STATUS_OK and vector is None:  # duplicate whose donor vanished
        status, p.reason = STATUS_SKIPPED, "vector source disappeared; re-run index"
    info = p.info
    row.size, row.mtime_ns = p.entry.size, p.entry.mtime_ns
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


def _move(session: Session, p: Prepared) -> None:
    row = session.get(Item, p.source_id)
    if row is None:  # the old row was removed meanwhile: nothing to keep
        return
    row.path = p.entry.path
    row.size, row.mtime_ns = p.entry.size, p.entry.mtime_ns


def remove_missing(catalog: Catalog, ids: list[int]) -> None:
    if not ids:
        return
    with catalog.session() as session:
        catalog.delete_items(session, ids)
        catalog.bump_generation(session)
