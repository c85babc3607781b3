"""The catalog: items, their metadata and vectors, through SQLAlchemy 2.x.

SQLite by default (WAL mode, so searches read while an index run writes), any
SQLAlchemy URL otherwise. Every write bumps a generation counter; the FAISS index file
records the generation it was built from, which is how staleness is detected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, and_, create_engine, delete, event, func, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, defer, sessionmaker

from clipfind.errors import CollectionError, StorageError
from clipfind.store import faults, meta
from clipfind.store.filtering import ids_matching
from clipfind.store.labels import LabelStore
from clipfind.store.migrate import upgrade_schema
from clipfind.store.schema import STATUS_OK, STATUS_SKIPPED, Item, Meta
from clipfind.store.status import IN_CHUNK
from clipfind.store.texts import TextStore

__all__ = ["Catalog", "Item", "ItemState", "VectorSource"]


@dataclass(frozen=True)
class ItemState:
    """What the indexer needs to decide whether a file changed."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str


@dataclass(frozen=True)
class VectorSource:
    """A snapshot of an indexed item whose vector a file with the same content reuses."""

    id: int
    vector: bytes
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera: str | None
    format: str | None


def vector_to_bytes(vec: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vec, dtype=np.float32).tobytes()


def bytes_to_vector(data: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype=np.float32)


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show it without anything that looks like a password
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 60} if is_sqlite else {},
        pool_pre_ping=not is_sqlite,
    )
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

    faults.install(engine, url, _safe_url(url))
    return engine


class Catalog:
    """Access to one collection's database."""

    def __init__(self, url: str, in_data_dir: bool = False) -> None:
        """``in_data_dir``: the URL is the default SQLite file in the collection folder
        (not one the user gave), so a failure to create it is the data dir's."""
        self.url = url
        try:
            self.engine = _make_engine(url)
            upgrade_schema(self.engine, _safe_url(url))
        except StorageError as exc:
            if faults.sqlite_file(url) is not None:
                raise  # names the file and the folder already
            cause = exc.__cause__ or exc
            reason = (str(getattr(cause, "orig", None) or cause).strip().splitlines() or ["?"])[0]
            raise StorageError(  # a server that is down: the URL is the user's to check
                f"Cannot open the catalog database {_safe_url(url)}: {reason[:300]}. Check "
                "that the server is running and reachable, and --db-url / CLIPFIND_DB_URL."
            ) from exc
        except (SQLAlchemyError, ImportError, ValueError, OSError) as exc:
            # a typo in --db-url, a server that is down, a missing driver: one sentence
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            path = faults.sqlite_file(url)
            if in_data_dir and path is not None and isinstance(exc, OSError):
                raise StorageError(
                    f"Cannot create the catalog {path}: {reason}. Make "
                    f"{faults.existing_ancestor(path)} writable, or choose another --data-dir "
                    "(CLIPFIND_DATA_DIR)."
                ) from exc
            raise CollectionError(
                f"Cannot open the catalog database {_safe_url(url)}: {reason}. Check --db-url "
                "/ CLIPFIND_DB_URL (a SQLAlchemy URL, e.g. postgresql+psycopg://USER@HOST/DB, "
                "with its driver installed)."
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.labels = LabelStore(self)
        self.texts = TextStore(self)

    @property
    def shown_url(self) -> str:
        """The database URL with its password hidden, for messages and ``info``."""
        return _safe_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions() as session, session.begin():
            yield session

    # -- meta --------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._sessions() as session:
            row = session.get(Meta, key)
            return None if row is None else row.value

    def set_meta(self, key: str, value: str, session: Session | None = None) -> None:
        if session is None:
            with self.session() as s:
                meta.upsert(s, key, value)
        else:
            meta.upsert(session, key, value)

    def modify_meta(self, key: str, default: str, change: Callable[[str], str]) -> str:
        """Read, change and write ``key`` in one transaction, safe against other writers."""
        with self.session() as session:
            return meta.modify(session, key, default, change)

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def bump_generation(self, session: Session) -> int:
        """Call inside every transaction that changes vectors or items; returns the new
        generation."""
        # The row stays locked until this transaction commits: on PostgreSQL, writers in
        # other processes commit their generations one after another, in order.
        return int(meta.modify(session, "generation", "0", lambda v: str(int(v) + 1)))

    # -- items -------------------------------------------------------------------
    def states_under(self, roots: Iterable[Path]) -> dict[str, ItemState]:
        """Every item whose path lies under one of ``roots``, keyed by path."""
        conds = []
        for root in roots:
            prefix = str(root).rstrip("/") + "/"
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # LIKE finds candidates (with an index where the database can); the exact
            # prefix test keeps it case-sensitive (SQLite's LIKE ignores ASCII case, so
            # indexing /x/a would otherwise prune the items of /x/A).
            conds.append(and_(Item.path.like(escaped + "%", escape="\\"),
                              func.substr(Item.path, 1, len(prefix)) == prefix))
            conds.append(Item.path == str(root))
        if not conds:
            return {}
        stmt = select(
            Item.id, Item.path, Item.size, Item.mtime_ns, Item.content_hash, Item.status
        ).where(or_(*conds))
        with self._sessions() as session:
            return {row.path: ItemState(*row) for row in session.execute(stmt)}

    def ids_with_hashes(self, hashes: Iterable[str]) -> dict[str, int]:
        """For each hash, one indexed item that has it (to reuse its vector)."""
        wanted = list(set(hashes))
        found: dict[str, int] = {}
        with self._sessions() as session:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                stmt = select(Item.content_hash, func.min(Item.id)).where(
                    Item.content_hash.in_(chunk), Item.status == STATUS_OK
                ).group_by(Item.content_hash)
                found.update({h: i for h, i in session.execute(stmt)})
        return found

    def vector_source(self, content_hash: str) -> VectorSource | None:
        """The vector (and image facts) an indexed item with this content has now, read in
        one statement: a row's hash and vector change together, so what comes back is the
        vector of this content even while a writer re-points rows."""
        stmt = (
            select(Item.id, Item.vector, Item.width, Item.height, Item.taken_at, Item.camera,
                   Item.format)
            .where(Item.content_hash == content_hash, Item.status == STATUS_OK,
                   Item.vector.is_not(None))
            .order_by(Item.id).limit(1)
        )
        with self._sessions() as session:
            row = session.execute(stmt).first()
        return None if row is None else VectorSource(*row)

    def get_item(self, item_id: int) -> Item | None:
        with self._sessions() as session:
            return session.get(Item, item_id)

    def get_items(self, ids: Iterable[int]) -> dict[int, Item]:
        """Items by id, without their vectors (2 KB each at 512-d: most of a result
        page's bytes; reading ``.vector`` on these raises, use :meth:`vector_of`)."""
        wanted = list(ids)
        out: dict[int, Item] = {}
        query = select(Item).options(defer(Item.vector, raiseload=True))
        with self._sessions() as session:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                out.update({it.id: it for it in session.scalars(query.where(Item.id.in_(chunk)))})
        return out

    def vector_of(self, item_id: int) -> npt.NDArray[np.float32] | None:
        with self._sessions() as session:
            data = session.scalar(
                select(Item.vector).where(Item.id == item_id, Item.status == STATUS_OK)
            )
        return None if data is None else bytes_to_vector(data).copy()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A session that sees one moment of the catalog throughout a long read (REPEATABLE
        READ on PostgreSQL, where other processes commit meanwhile): a generation and
        exactly the vectors of it (``generation_in``, ``iter_vectors(session=...)``)."""
        with self._sessions() as session:
            if self.engine.dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @staticmethod
    def generation_in(session: Session) -> int:
        return int(session.scalar(select(Meta.value).where(Meta.key == "generation")) or 0)

    def iter_vectors(
        self, chunk: int = 20_000, session: Session | None = None
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """Stream ``(ids, vectors)`` of all indexed items in id order, ``chunk`` at a time."""
        last = -1
        with nullcontext(session) if session is not None else self._sessions() as session:
            while True:
                stmt = (
                    select(Item.id, Item.vector)
                    .where(Item.status == STATUS_OK, Item.vector.is_not(None), Item.id > last)
                    .order_by(Item.id)
                    .limit(chunk)
                )
                rows = session.execute(stmt).all()
                if not rows:
                    return
                last = rows[-1][0]
                yield _rows_to_arrays(rows)

    def vectors_for(
        self, ids: Iterable[int]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(ids, vectors)`` of the given indexed items (missing ids are left out)."""
        wanted = sorted(set(ids))
        rows: list = []
        with self._sessions() as session:
            for start in range(0, len(wanted), IN_CHUNK):
                stmt = select(Item.id, Item.vector).where(
                    Item.status == STATUS_OK, Item.id.in_(wanted[start : start + IN_CHUNK])
                )
                rows.extend(session.execute(stmt).all())
        return _rows_to_arrays(rows)

    def count(self, status: str | None = STATUS_OK) -> int:
        stmt = select(func.count(Item.id))
        if status is not None:
            stmt = stmt.where(Item.status == status)
        with self._sessions() as session:
            return int(session.scalar(stmt) or 0)

    def skipped(self, limit: int | None = None) -> list[tuple[int, str, str]]:
        stmt = (
            select(Item.id, Item.path, Item.skip_reason)
            .where(Item.status == STATUS_SKIPPED)
            .order_by(Item.path)
        )
        if limit:
            stmt = stmt.limit(limit)
        with self._sessions() as session:
            return [(i, p, r or "") for i, p, r in session.execute(stmt)]

    def delete_items(self, session: Session, ids: Iterable[int]) -> None:
        wanted = list(ids)
        for start in range(0, len(wanted), IN_CHUNK):
            session.execute(delete(Item).where(Item.id.in_(wanted[start : start + IN_CHUNK])))

    def reset_vectors(self) -> None:
        """Forget every vector (``--reembed``): the next index run re-encodes everything."""
        with self.session() as session:
            session.execute(
                update(Item).values(vector=None, mtime_ns=-1, status=STATUS_SKIPPED,
                                    skip_reason="waiting to be re-embedded")
            )
            self.bump_generation(session)

    def ids_matching(self, path: str | None = None, after: datetime | None = None,
                     before: datetime | None = None, label: str | None = None
                     ) -> npt.NDArray[np.int64]:
        """Ids of indexed items under a path glob, a capture-date range and a label
        (``LABEL`` or ``SET:LABEL``); see :mod:`clipfind.store.filtering`."""
        return ids_matching(self, path, after, before, label)

    def date_bounds(self) -> tuple[datetime | None, datetime | None]:
        with self._sessions() as session:
            lo, hi = session.execute(select(func.min(Item.taken_at), func.max(Item.taken_at))).one()
        return lo, hi


def _rows_to_arrays(rows: list) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    if not rows:
        return ids, np.zeros((0, 0), np.float32)
    vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
    return ids, vecs.reshape(len(rows), -1)
