"""Filters that restrict a search before top-k is taken: path glob, capture date, label.

The store turns them into SQL conditions (``Catalog.ids_matching``); the matching ids go
to FAISS as an id selector, so a filter never fills a page with unrelated items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from clipfind.errors import QueryError

if TYPE_CHECKING:
    from clipfind.store.catalog import Catalog


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


def allowed_ids(catalog: Catalog, filters: Filters) -> npt.NDArray[np.int64] | None:
    """Ids that pass ``filters``, or ``None`` when nothing filters."""
    if not filters.active:
        return None
    return catalog.ids_matching(filters.path, filters.after, filters.before, filters.label)
