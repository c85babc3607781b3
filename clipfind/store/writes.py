"""Item writes of one indexing batch, in one transaction: store a file (indexed or
skipped), touch one whose content is unchanged, move one that was renamed. The indexer's
writer (``indexer/writer.py``) decides what to do with each file and calls these; the
SQL is here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clipfind.store.collection import IndexChanges
from clipfind.store.schema import Item
from clipfind.store.status import ItemStatus

if TYPE_CHECKING:
    from clipfind.store.catalog import Catalog

_FACTS = ("width", "height", "taken_at", "camera", "format")


@dataclass(frozen=True)
class ItemWrite:
    """What to store for one file. ``facts``: anything with ``width``, ``height``,
    ``taken_at``, ``camera`` and ``format`` (the decoded image's, or a duplicate's donor);
    ``None`` keeps the row's facts, except that a skipped file loses them."""

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    existing_id: int | None = None
    facts: Any = None


class ItemWriter:
    """The writes of one batch; see :func:`item_writes`."""

    def __init__(self, catalog: Catalog, session: Session, now: datetime) -> None:
        self._catalog = catalog
        self._session = session
        self._now = now
        self._stored: list[Item] = []

    def store(self, item: ItemWrite, vector: bytes | None, skip_reason: str | None = None) -> None:
        """Insert or update the file's row: indexed with ``vector``, or skipped (no
        vector) with ``skip_reason``. Found by id, else by path (paths are unique)."""
        session = self._session
        row = session.get(Item, item.existing_id) if item.existing_id else None
        if row is None:
            row = session.scalar(select(Item).where(Item.path == item.path))
        if row is None:
            row = Item(path=item.path)
            session.add(row)
        status = ItemStatus.OK if vector is not None else ItemStatus.SKIPPED
        row.size, row.mtime_ns = item.size, item.mtime_ns
        row.content_hash = item.content_hash
        row.status, row.skip_reason = status, (skip_reason if status == ItemStatus.SKIPPED else None)
        row.vector = vector
        row.indexed_at = self._now
        if item.facts is not None:
            for name in _FACTS:
                setattr(row, name, getattr(item.facts, name))
        elif status == ItemStatus.SKIPPED:
            for name in _FACTS:
                setattr(row, name, None)
        self._stored.append(row)

    def first_with_content(self, content_hash: str | None) -> Item | None:
        """The first indexed item with this content, rows written earlier in this
        batch included: the vector a duplicate reuses."""
        if content_hash is None:
            return None
        return self._session.scalar(
            select(Item).where(Item.content_hash == content_hash, Item.status == ItemStatus.OK,
                               Item.vector.is_not(None)).order_by(Item.id).limit(1))

    def touch(self, item_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new size/mtime (a copy kept its bytes, a touch)."""
        row = self._session.get(Item, item_id)
        if row is not None:  # removed meanwhile: nothing to keep
            row.size, row.mtime_ns = size, mtime_ns

    def move(self, item_id: int, path: str, size: int, mtime_ns: int) -> None:
        """Re-point a row at the file's new path; its vector and labels stay."""
        row = self._session.get(Item, item_id)
        if row is None:  # the old row was removed meanwhile: nothing to keep
            return
        row.path = path
        row.size, row.mtime_ns = size, mtime_ns

    def changes(self) -> IndexChanges:
        """Flush (new rows get their ids), bump the generation, and say what the FAISS
        index must follow: new vectors by id, and ids that lost theirs."""
        self._session.flush()
        upserts = {r.id: r.vector for r in self._stored if r.status == ItemStatus.OK and r.vector}
        removed = tuple(r.id for r in self._stored if r.id not in upserts)
        return IndexChanges(self._catalog.bump_generation(self._session), upserts, removed)


@contextmanager
def item_writes(catalog: Catalog) -> Iterator[ItemWriter]:
    """``with item_writes(catalog) as w:`` one transaction: committed when the block
    ends, rolled back on an error (an interrupted run keeps every earlier batch)."""
    with catalog.session() as session:
        yield ItemWriter(catalog, session, datetime.now())


def remove_items(catalog: Catalog, ids: list[int]) -> IndexChanges:
    """Delete items (files gone, or forgotten) in one transaction."""
    with catalog.session() as session:
        catalog.delete_items(session, ids)
        generation = catalog.bump_generation(session)
    return IndexChanges(generation, removed=tuple(ids))
