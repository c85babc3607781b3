"""The catalog's ``meta`` table (key → value) written safely by several processes at
once: on PostgreSQL two writers may insert the same key together (the first run on a
fresh catalog, two runs recording their roots), so writes are upserts, and a
read-modify-write locks the row it reads until its transaction commits."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clipfind.store.schema import Meta


def _insert(session: Session):  # type: ignore[no-untyped-def]
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(Meta)
    if name == "sqlite":
        return sqlite.insert(Meta)
    return None


def upsert(session: Session, key: str, value: str) -> None:
    """Set ``key`` to ``value``, whether or not another transaction inserts it meanwhile."""
    stmt = _insert(session)
    if stmt is None:  # another dialect: one writer at a time there anyway
        session.merge(Meta(key=key, value=value))
        return
    stmt = stmt.values(key=key, value=value)
    session.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def ensure(session: Session, key: str, default: str) -> None:
    """Insert ``key`` with ``default`` unless it exists (another transaction's insert wins)."""
    stmt = _insert(session)
    if stmt is None:
        if session.get(Meta, key) is None:
            session.add(Meta(key=key, value=default))
            session.flush()
        return
    session.execute(stmt.values(key=key, value=default).on_conflict_do_nothing(index_elements=["key"]))


def claim(session: Session, key: str, value: str) -> str:
    """Set ``key`` to ``value`` unless another transaction has set it first; the value
    that holds afterwards (ours, or the first writer's, waited for until it commits)."""
    ensure(session, key, value)
    return session.scalar(select(Meta.value).where(Meta.key == key)) or value


def modify(session: Session, key: str, default: str, change: Callable[[str], str]) -> str:
    """``key``'s value replaced by ``change(value)``, the row locked (``FOR UPDATE``) from
    the read to the commit, so two writers' changes both land; returns the new value."""
    ensure(session, key, default)
    old = session.scalar(select(Meta.value).where(Meta.key == key).with_for_update())
    new = change(default if old is None else old)
    session.execute(update(Meta).where(Meta.key == key).values(value=new))
    return new
