"""The catalog for a one-shot read: the few reads a query makes (``get_meta``,
``generation``, ``get_items``, ``vector_of``) answered with the standard library's
``sqlite3``, so a cold ``clipfind search`` never imports SQLAlchemy (a third of a
second, a third of the command's start-up).

It serves only the default SQLite catalog at the code's schema revision; anything else
(a write, a filter, a lock, another backend, a catalog to create or upgrade, any SQLite
error) goes to the full :class:`~clipfind.store.catalog.Catalog`, opened on first need.
Once that is open every call goes there, so a long-running process (the HTTP app, an
index run) ends up on the one catalog. SELECTs run outside a transaction, so each read
sees the latest commit, as the full catalog's short sessions do.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from clipfind.store.faults import sqlite_file
from clipfind.store.migrate import SCHEMA_REVISION
from clipfind.store.status import IN_CHUNK, ItemStatus

if TYPE_CHECKING:
    from clipfind.store.catalog import Catalog

_COLUMNS = (
    "id",
    "path",
    "size",
    "mtime_ns",
    "content_hash",
    "width",
    "height",
    "taken_at",
    "camera",
    "format",
    "status",
    "skip_reason",
    "indexed_at",
)
_WHEN = ("taken_at", "indexed_at")


@dataclass(frozen=True)
class ItemRow:
    """An item as :meth:`Catalog.get_items` gives it, without its vector."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera: str | None
    format: str | None
    status: str
    skip_reason: str | None
    indexed_at: datetime | None


def open_catalog(url: str, in_data_dir: bool) -> Catalog:
    """The catalog at ``url``: a :class:`QuickCatalog` where it can serve (the default
    SQLite file, present, at this schema), else the full one (which creates, upgrades
    and explains what is wrong)."""
    path = sqlite_file(url)
    if in_data_dir and path is not None and "?" not in url:
        try:
            return QuickCatalog(url, path)  # type: ignore[return-value]
        except (sqlite3.Error, OSError, _NotQuick):
            pass
    from clipfind.store.catalog import Catalog

    return Catalog(url, in_data_dir=in_data_dir)


class _NotQuick(Exception):
    """The catalog needs the full path (missing tables, another schema revision)."""


def _when(value: str | None) -> datetime | None:
    # SQLAlchemy stores SQLite DATETIME as "YYYY-MM-DD HH:MM:SS.ffffff"
    return None if value is None else datetime.fromisoformat(value)


class QuickCatalog:
    """See the module docstring. Attributes it does not answer come from the full
    catalog (``__getattr__``), so it stands in wherever a :class:`Catalog` is used."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self._full: Catalog | None = None
        self._lock = threading.Lock()
        # mode=rw: never create a file here (the full catalog creates, with its schema)
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw",
            uri=True,
            timeout=60,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            rows = self._conn.execute("SELECT version_num FROM alembic_version").fetchall()
            if ",".join(sorted(r[0] for r in rows)) != SCHEMA_REVISION:
                raise _NotQuick
        except BaseException:
            self._conn.close()
            raise

    @property
    def shown_url(self) -> str:
        return self.url  # a file URL holds no password

    @property
    def full(self) -> Catalog:
        """The full catalog (opened now if it is not yet); this one's reads then stop."""
        with self._lock:
            if self._full is None:
                from clipfind.store.catalog import Catalog

                self._full = Catalog(self.url, in_data_dir=True)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            return self._full

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never for this object's own state (half-built, copied)
            raise AttributeError(name)
        return getattr(self.full, name)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._full is not None:
                self._full.close()
                self._full = None

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]] | None:
        """The rows of one SELECT, or ``None``: ask the full catalog instead (it is open,
        or this read failed, and the full one reports the fault in its words)."""
        with self._lock:
            if self._conn is None:
                return None
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error:
                return None

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        if rows is None:
            return self.full.get_meta(key)
        return rows[0][0] if rows else None

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def get_items(self, ids: Iterable[int]) -> dict[int, ItemRow]:
        wanted = list(ids)
        out: dict[int, ItemRow] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            rows = self._rows(
                f"SELECT {', '.join(_COLUMNS)} FROM items WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            )
            if rows is None:
                return self.full.get_items(wanted)  # type: ignore[return-value]
            for row in rows:
                fields = dict(zip(_COLUMNS, row, strict=True))
                for name in _WHEN:
                    fields[name] = _when(fields[name])
                out[row[0]] = ItemRow(**fields)
        return out

    def vector_of(self, item_id: int) -> npt.NDArray[np.float32] | None:
        rows = self._rows(
            "SELECT vector FROM items WHERE id = ? AND status = ?", (item_id, str(ItemStatus.OK))
        )
        if rows is None:
            return self.full.vector_of(item_id)
        data = rows[0][0] if rows else None
        return None if data is None else np.frombuffer(data, dtype=np.float32).copy()
