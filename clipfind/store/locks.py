"""One writer at a time per collection: a lock file in the collection folder (held with
``flock``, so a crashed or killed run never leaves it held), and on PostgreSQL also an
advisory lock, for writers on other machines that share the catalog but not the folder."""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from clipfind.errors import CollectionBusyError, StorageError

LOCK_NAME = "index.lock"


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return pid if pid.isdigit() else "unknown"


@contextmanager
def file_lock(folder: Path, collection: str) -> Iterator[None]:
    """Hold ``folder/index.lock`` exclusively, or raise :class:`CollectionBusyError`."""
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a read-only collection folder: nothing can be written anyway
        raise StorageError(
            f"Cannot write the lock file {path} ({exc.strerror or exc}); nothing was changed. "
            f"Make {folder} writable, or choose another --data-dir (CLIPFIND_DATA_DIR)."
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectionBusyError(
                f"another index run is in progress (pid {_holder(fd)}) on collection "
                f"'{collection}' ({path}); wait for it to finish, then run this again."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _key(collection: str) -> int:
    return zlib.crc32(f"clipfind-writer:{collection}".encode())  # fits pg's bigint


@contextmanager
def database_lock(engine: Engine, collection: str) -> Iterator[None]:
    """On PostgreSQL, a session advisory lock for the run (nothing elsewhere)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(collection)})
        if not got.scalar():
            url = engine.url.render_as_string(hide_password=True)
            raise CollectionBusyError(
                f"another index run is in progress on collection '{collection}' (it holds "
                f"the writer lock of {url}); wait for it to finish, then run this again."
            )
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(collection)})


@contextmanager
def writer_lock(folder: Path, engine: Engine, collection: str) -> Iterator[None]:
    """Both locks, the folder's first (it names the holder's pid)."""
    with file_lock(folder, collection), database_lock(engine, collection):
        yield
