"""Database faults as one sentence: a damaged SQLite file, a full disk, a read-only
folder or an unreachable server becomes a :class:`StorageError` (exit 7, HTTP 503) that
names the file and the remedy, instead of a driver's traceback.

The conversion hooks SQLAlchemy's ``handle_error`` event, so every statement, commit and
connect of the catalog goes through it; the transaction in progress rolls back, so
nothing further is written.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING

from clipfind.errors import StorageError

if TYPE_CHECKING:  # imported by clipfind.store.quick, which runs without SQLAlchemy
    from sqlalchemy import Engine
    from sqlalchemy.engine import ExceptionContext

# SQLite's messages (sqlite3 raises them all as DatabaseError/OperationalError).
_DAMAGED = ("malformed", "file is not a database", "not a database", "corrupt")
_FULL = ("database or disk is full", "no space left")
_READ_ONLY = ("readonly database", "read-only", "unable to open database file",
              "permission denied")
_IO = ("disk i/o error",)


def sqlite_file(url: str) -> Path | None:
    """The catalog file of a SQLite URL (``None`` for in-memory or other databases)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    name = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(name) if name else None


def existing_ancestor(path: Path) -> Path:
    """The nearest folder above ``path`` that exists (the one to make writable)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return path.parent


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def storage_error(exc: BaseException, url: str, shown_url: str) -> StorageError | None:
    """The sentence for a fault of the catalog at ``url``, or ``None`` when ``exc`` is
    not a storage fault (a bad statement or value stays the caller's error)."""
    reason = _first_line(getattr(exc, "orig", None) or exc)
    low = reason.lower()
    path = sqlite_file(url)
    if path is not None:
        return _sqlite_error(exc, low, reason, path)
    kind = type(getattr(exc, "orig", None) or exc).__name__
    if "no space left" in low or "disk full" in low:
        return StorageError(f"The catalog database {shown_url} has no space left ({reason}); "
                            "nothing further was written. Free space on its server and run "
                            "the command again.")
    if kind in ("OperationalError", "InterfaceError") or getattr(exc, "connection_invalidated",
                                                                  False):
        return StorageError(f"The catalog database {shown_url} is unavailable ({reason}); "
                            "nothing further was written. Check that the server is running "
                            "and reachable, then run the command again.")
    return None


def _sqlite_error(exc: BaseException, low: str, reason: str, path: Path) -> StorageError | None:
    code = getattr(getattr(exc, "orig", None) or exc, "errno", None)
    if code == errno.ENOSPC or any(m in low for m in _FULL):
        return StorageError(f"No space left for the catalog {path} ({reason}); nothing further "
                            f"was written. Free disk space on {path.parent} and run the "
                            "command again.")
    if any(m in low for m in _DAMAGED):
        return StorageError(f"The catalog {path} is damaged ({reason}); nothing was changed. "
                            f"Restore it from a backup, or salvage it with `sqlite3 {path} "
                            ".recover`; index.faiss beside it is kept.")
    if any(m in low for m in _READ_ONLY):
        return StorageError(f"Cannot write the catalog {path} ({reason}); nothing was changed. "
                            f"Make {path.parent} and its files writable, or choose another "
                            "--data-dir (CLIPFIND_DATA_DIR).")
    if any(m in low for m in _IO):
        return StorageError(f"The disk holding the catalog {path} failed to read or write "
                            f"({reason}); nothing further was written. Check the drive, "
                            "then run the command again.")
    return None


def install(engine: Engine, url: str, shown_url: str) -> None:
    """Turn the storage faults of ``engine`` into :class:`StorageError`."""
    from sqlalchemy import event

    @event.listens_for(engine, "handle_error")
    def _convert(context: ExceptionContext) -> None:
        error = storage_error(context.original_exception, url, shown_url)
        if error is not None:
            raise error from context.original_exception
