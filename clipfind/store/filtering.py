"""The ids of indexed items that pass a search's filters (path glob, capture date,
label), as SQL conditions on the catalog; ``search.filters`` parses what a user typed
and calls :func:`ids_matching` (``Catalog.ids_matching``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, or_, select

from clipfind.store.labels import label_condition
from clipfind.store.schema import Item
from clipfind.store.status import ItemStatus

if TYPE_CHECKING:
    from clipfind.store.catalog import Catalog

_INT64 = (-(2**63), 2**63 - 1)


def _glob(pattern: str) -> str:
    # a pattern that does not start at the root or with '*' may match anywhere
    return pattern if pattern.startswith(("/", "*")) else "*" + pattern


def path_condition(pattern: str, dialect: str) -> Any:
    """``path`` glob as a condition: SQLite's GLOB (case-sensitive, like paths), a
    LIKE with the glob's wildcards translated elsewhere."""
    glob = _glob(pattern)
    if dialect == "sqlite":
        return Item.path.op("GLOB")(glob)
    like = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = like.replace("*", "%").replace("?", "_")
    return Item.path.like(like, escape="\\")


def _date_condition(bound: datetime, after: bool) -> Any:
    """The capture date (EXIF), else the file's mtime, against ``bound``."""
    try:
        ns = int(bound.timestamp() * 1e9)
    except (OverflowError, OSError, ValueError):  # a date the platform cannot place
        ns = _INT64[0] if bound.year < 1970 else _INT64[1]
    ns = max(_INT64[0], min(_INT64[1], ns))  # mtime_ns is int64: year 2999 must not overflow
    if after:
        return or_(Item.taken_at >= bound, and_(Item.taken_at.is_(None), Item.mtime_ns >= ns))
    return or_(Item.taken_at <= bound, and_(Item.taken_at.is_(None), Item.mtime_ns <= ns))


def ids_matching(
    catalog: Catalog,
    path: str | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    label: str | None = None,
) -> npt.NDArray[np.int64]:
    """Ids of indexed items matching every given condition (``label``: ``LABEL`` or
    ``SET:LABEL``), in id order."""
    stmt = select(Item.id).where(Item.status == ItemStatus.OK)
    if path:
        stmt = stmt.where(path_condition(path, catalog.engine.dialect.name))
    if after:
        stmt = stmt.where(_date_condition(after, after=True))
    if before:
        stmt = stmt.where(_date_condition(before, after=False))
    if label:
        stmt = stmt.where(Item.id.in_(label_condition(label)))
    with catalog.session() as session:
        ids = session.scalars(stmt.order_by(Item.id)).all()
    return np.asarray(ids, dtype=np.int64)
