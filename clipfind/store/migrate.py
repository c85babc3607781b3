"""The catalog's schema version: every open brings a collection to the code's Alembic
revision, upgrading it in place (SQLite and PostgreSQL alike), and a collection written
by a newer clipfind is refused untouched. The revisions ship as package data in
``clipfind/store/migrations``; no ``alembic.ini`` is read at run time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from clipfind.errors import CollectionError, SchemaVersionError

if TYPE_CHECKING:  # SQLAlchemy is imported where it runs: clipfind.store.quick reads
    # SCHEMA_REVISION without it
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# The head of migrations/versions (tests/test_migrations.py checks they agree): a catalog
# at this revision opens without importing Alembic, which costs more than half a second.
SCHEMA_REVISION = "0001"
_LOCK_KEY = 0x636C6970  # 'clip': the advisory lock that serialises upgrades on PostgreSQL


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The revision this code writes."""
    head = _script().get_current_head()
    assert head is not None, "clipfind/store/migrations/versions holds no revision"
    return head


def _revision(conn: Connection) -> str | None:
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("alembic_version"):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return ",".join(sorted(rows)) or None  # several rows (branches): never a known revision


def current_revision(engine: Engine) -> str | None:
    """The database's revision; ``None`` for an empty database or one made before
    migrations existed."""
    with engine.connect() as conn:
        return _revision(conn)


def _lock(conn: Connection) -> None:
    """Hold the database's schema lock until the transaction ends, so that of several
    processes opening one new catalog, one upgrades and the others wait, then find it
    done (SQLite: the write lock, waited for up to its busy timeout; PostgreSQL: an
    advisory lock)."""
    from sqlalchemy import text

    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def _refuse_newer(current: str | None, known: set[str], shown_url: str) -> None:
    if current is not None and current not in known:
        raise SchemaVersionError(
            f"The catalog {shown_url} was written by a newer version of clipfind (schema "
            f"revision {current}; this version knows up to {SCHEMA_REVISION}). Upgrade "
            "clipfind (pip install -U clipfind) to open it; nothing was changed.")


def upgrade_schema(engine: Engine, shown_url: str) -> None:
    """Bring the catalog at ``engine`` to :func:`head_revision` (creating its tables when
    it is new). Raises :class:`SchemaVersionError` when the catalog is newer than this
    code (left unchanged)."""
    current = current_revision(engine)
    if current == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.util.exc import CommandError

    known = {r.revision for r in _script().walk_revisions()}
    _refuse_newer(current, known, shown_url)
    try:
        with engine.begin() as conn:
            _lock(conn)
            current = _revision(conn)  # another process may have upgraded meanwhile
            if current == SCHEMA_REVISION:
                return
            _refuse_newer(current, known, shown_url)
            log.info("upgrading catalog %s from schema %s to %s", shown_url, current or "(none)",
                     SCHEMA_REVISION)
            command.upgrade(_config(conn), "head")
    except CommandError as exc:
        raise CollectionError(f"Cannot upgrade the catalog {shown_url}: {exc}") from exc
