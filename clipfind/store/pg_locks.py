"""Writer claims on PostgreSQL, for writers on other machines that share the catalog but
not the collection folder: session advisory locks held by one connection for the run.

A claim on the items under a folder takes the folder's lock exclusively and each of its
ancestors' locks shared (intention locks, as a database locks a table before a row): a
run on the same folder, on a folder inside it (it wants our folder shared) or on one
above it (it wants its own exclusively, which we hold shared) is refused, while runs on
disjoint folders share only ancestors. A claim on every item takes ``/`` exclusively, the
key older versions took for the whole collection. The holder is named through the lock
connection's ``application_name``."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from sqlalchemy import Connection, Engine, text

from clipfind.errors import CollectionBusyError

_HOLDER = re.compile(r"^clipfind (?P<what>[^,]+), pid (?P<pid>\d+) on (?P<host>.*)$")
_FIND_HOLDER = text(
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.objsubid = 1 LIMIT 1"
)


def lock_names(roots: tuple[str, ...], all_items: bool, texts: bool) -> dict[str, bool]:
    """``{lock name: exclusive}`` for a claim."""
    names: dict[str, bool] = {"texts": True} if texts else {}
    if all_items:
        names["items:/"] = True
    for root in roots:
        for parent in PurePosixPath(root).parents:
            names.setdefault(f"items:{parent}", False)
        names[f"items:{PurePosixPath(root)}"] = True
    return names


def _key(collection: str, name: str) -> int:
    if name == "items:/":  # the whole collection: the key older versions lock
        return zlib.crc32(f"clipfind-writer:{collection}".encode())
    digest = hashlib.blake2b(f"clipfind-writer:{collection}:{name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _holder(conn: Connection, key: int) -> tuple[str, str]:
    """``(what, "pid N on HOST")`` of the session holding ``key``, as far as it is known."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    row = conn.execute(_FIND_HOLDER, {"hi": unsigned >> 32, "lo": unsigned & 0xFFFF_FFFF}).first()
    found = _HOLDER.match(row[0] or "") if row else None
    if found is None:
        return "index run", "pid unknown"
    return found["what"], f"pid {found['pid']} on {found['host']}"


@contextmanager
def database_lock(engine: Engine, collection: str, claim: object) -> Iterator[None]:
    """On PostgreSQL, hold ``claim``'s advisory locks for the block (nothing elsewhere)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    names = lock_names(claim.roots, claim.all_items, claim.texts)  # type: ignore[attr-defined]
    what = str(getattr(claim, "what", "index run"))
    me = f"clipfind {what}, pid {os.getpid()} on {socket.gethostname()}"[:63]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": me})
        try:
            for name, exclusive in sorted(names.items()):
                fn = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
                key = _key(collection, name)
                if not conn.execute(text(f"SELECT {fn}(:k)"), {"k": key}).scalar():
                    raise _refused(conn, engine, collection, name, key)
            yield
        finally:
            try:  # a lost connection has released them already
                conn.execute(text("SELECT pg_advisory_unlock_all()"))
                conn.execute(text("SELECT set_config('application_name', '', false)"))
            except Exception:  # never hide the block's own error
                conn.invalidate()


def _refused(conn: Connection, engine: Engine, collection: str, name: str, key: int) -> CollectionBusyError:
    what, holder = _holder(conn, key)
    url = engine.url.render_as_string(hide_password=True)
    part = {"texts": "the texts", "items:/": "every item"}.get(name, name.removeprefix("items:"))
    return CollectionBusyError(
        f"another {what} is in progress ({holder}) on collection '{collection}' (it holds "
        f"the writer lock on {part} of {url}); wait for it to finish, then run this again."
    )
