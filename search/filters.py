"""Filters that restrict a search before top-k is taken: path glob, capture date, label.

Each becomes a SQL condition on the catalog; the matching ids go to FAISS as an id
selector, so a filter never fills a page with unrelated items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, or_, select

from clipfind.errors import QueryError
from clipfind.store.catalog import Catalog
from clipfind.store.schema import STATUS_OK, Item


@dataclass(frozen=True)
class Filters:
    """``path``: a glob on the full path (``*`` matches across folders; a pattern not
    starting with ``/`` or ``*`` may match anywhere). ``after``/``before``: the capture
    date (EXIF, else file mtime), inclusive. ``label``: ``LABEL`` or ``SET:LABEL``."""

    path: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    label: str | None = None

    @property
    def active(self) -> bool:
        return any((self.path, self.after, self.before, self.label))


def parse_date(value: str | date | datetime | None, end: bool = False) -> datetime | None:
    """``2021``, ``2021-06``, ``2021-06-30`` or an ISO datetime; ``end`` rounds up."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time.max if end else time.min)
    text = str(value).strip()
    try:
        if len(text) == 4:
            y = int(text)
            return datetime(y, 12, 31, 23, 59, 59) if end else datetime(y, 1, 1)
        if len(text) == 7:
            y, m = map(int, text.split("-"))
            if end:
                nxt = datetime(y + (m == 12), m % 12 + 1, 1)
                return datetime.fromtimestamp(nxt.timestamp() - 1)
            return datetime(y, m, 1)
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise QueryError(f"cannot read date {text!r}; use YYYY, YYYY-MM or YYYY-MM-DD") from exc
    if len(text) == 10 and end:
        return datetime.combine(parsed.date(), time.max)
    return parsed


def _glob(pattern: str) -> str:
    return pattern if pattern.startswith(("/", "*")) else "*" + pattern


def path_condition(pattern: str, dialect: str):  # type: ignore[no-untyped-def]
    glob = _glob(pattern)
    if dialect == "sqlite":
        return Item.path.op("GLOB")(glob)
    like = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = like.replace("*", "%").replace("?", "_")
    return Item.path.like(like, escape="\\")


def _date_condition(bound: datetime, after: bool):  # type: ignore[no-untyped-def]
    try:
        ns = int(bound.timestamp() * 1e9)
    except (OverflowError, OSError, ValueError):  # a date the platform cannot place
        ns = -(2**63) if bound.year < 1970 else 2**63 - 1
    ns = max(-(2**63), min(2**63 - 1, ns))  # mtime_ns is int64: year 2999 must not overflow
    if after:
        return or_(Item.taken_at >= bound, and_(Item.taken_at.is_(None), Item.mtime_ns >= ns))
    return or_(Item.taken_at <= bound, and_(Item.taken_at.is_(None), Item.mtime_ns <= ns))


def allowed_ids(catalog: Catalog, filters: Filters) -> npt.NDArray[np.int64] | None:
    """Ids that pass ``filters``, or ``None`` when nothing filters."""
    if not filters.active:
        return None
    stmt = select(Item.id).where(Item.status == STATUS_OK)
    if filters.path:
        stmt = stmt.where(path_condition(filters.path, catalog.engine.dialect.name))
    if filters.after:
        stmt = stmt.where(_date_condition(filters.after, after=True))
    if filters.before:
        stmt = stmt.where(_date_condition(filters.before, after=False))
    if filters.label:
        stmt = stmt.where(Item.id.in_(label_subquery(filters.label)))
    with catalog.session() as session:
        ids = session.scalars(stmt).all()
    return np.asarray(ids, dtype=np.int64)


def label_subquery(spec: str):  # type: ignore[no-untyped-def]
    """Ids labelled ``LABEL`` (any set) or ``SET:LABEL``."""
    from clipfind.store.schema import ItemLabel, LabelSet

    set_name, sep, label = spec.partition(":")
    if not sep:
        set_name, label = "", spec
    stmt = select(ItemLabel.item_id).where(ItemLabel.label == label)
    if set_name:
        stmt = stmt.join(LabelSet, LabelSet.id == ItemLabel.set_id).where(LabelSet.name == set_name)
    return stmt
