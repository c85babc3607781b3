"""Label sets in the catalog: a set's definition, the labels it gave each item, and the
pages of items that carry one label. The only module that writes label SQL; zero-shot
labeling (``search.zeroshot.labeling``) scores and calls these methods."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from clipfind.errors import CollectionError, NotFoundError, QueryError
from clipfind.store.schema import LABEL_WIDTH, SET_NAME_WIDTH, Item, ItemLabel, LabelSet
from clipfind.store.status import ItemStatus

if TYPE_CHECKING:
    from clipfind.store.catalog import Catalog

log = logging.getLogger(__name__)

ANY = object()  # replace_set's expect: no check
_INSERT_CHUNK = 50_000  # rows per executemany: bounded memory at a million labels


@dataclass(frozen=True)
class LabelSetInfo:
    name: str
    labels: list[str]
    templates: list[str]
    model: str
    params: dict[str, Any]
    created_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    labelled_items: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat(timespec="seconds")
        out["none_of_these"] = max(0, int(self.params.get("scored", 0)) - self.labelled_items)
        return out


@dataclass(frozen=True)
class LabelRow:
    """One stored label of one item."""

    item_id: int
    path: str
    label: str
    score: float
    rank: int


@dataclass(frozen=True)
class LabelledItem:
    """An indexed item on a page of one label, with the score the label got."""

    id: int
    path: str
    score: float
    width: int | None
    height: int | None
    taken_at: datetime | None
    camera: str | None


@dataclass(frozen=True)
class ItemLabelInfo:
    """A label an item was given, and by which set."""

    set: str
    label: str
    score: float


@dataclass(frozen=True)
class LabelAssignments:
    """Parallel arrays of a labeling run: item ids, label column, score, rank."""

    item_ids: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray


def _missing(name: str) -> NotFoundError:
    return NotFoundError(f"no label set named {name!r} (clipfind labels list)")


def _storable(text: str, width: int) -> bool:
    """Whether both backends can hold ``text`` in a column ``width`` wide: PostgreSQL
    refuses a longer text or a NUL byte where SQLite would keep it."""
    return len(text) <= width and "\x00" not in text


def _check_storable(name: str, labels: Sequence[str]) -> None:
    """The last guard (the edge checks first: search/zeroshot/names.py)."""
    bad = [t for t, w in [(name, SET_NAME_WIDTH), *((lb, LABEL_WIDTH) for lb in labels)]
           if not _storable(t, w)]
    if bad:
        raise QueryError(f"cannot store {bad[0][:40]!r}: a set name has at most {SET_NAME_WIDTH} "
                         f"characters, a label {LABEL_WIDTH}, and neither holds NUL")


def _set_id(session: Session, name: str) -> int | None:
    """The set's id; None where there is none (a name no set can have is not looked up:
    PostgreSQL would refuse it as a parameter)."""
    if not _storable(name, SET_NAME_WIDTH):
        return None
    return session.scalar(select(LabelSet.id).where(LabelSet.name == name))


def _changed_meanwhile(name: str, now: int | None) -> CollectionError:
    gone = "deleted" if now is None else "created by another run"
    return CollectionError(
        f"label set {name!r} was {gone} while this run was scoring; nothing was "
        "stored. Run the label command again to store it.")


def _locked_set_id(session: Session, name: str) -> int | None:
    """:func:`_set_id` with the set's row locked to the commit, read after any transaction
    that holds it commits. A no-op update takes the lock on both backends: on PostgreSQL
    the row's (waiting for its holder, then re-read), on SQLite the database's write lock
    (pysqlite begins the transaction at the first write, so a plain SELECT first would
    read before the wait)."""
    if not _storable(name, SET_NAME_WIDTH):
        return None
    session.execute(update(LabelSet).where(LabelSet.name == name).values(name=name))
    return _set_id(session, name)


class LabelStore:
    """The label sets of one catalog (``catalog.labels``)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    # -- writing -------------------------------------------------------------------
    def identity(self, name: str) -> int | None:
        """The id of the set ``name`` now (None: none), for :meth:`replace_set`'s ``expect``."""
        with self._catalog.session() as session:
            return _set_id(session, name)

    def check_unchanged(self, name: str, expect: int | None) -> None:
        """Raise :class:`CollectionError` when the set ``name`` is no longer the one a run
        saw at its start (``expect``: its :meth:`identity`): deleted, or made by another run.
        A label run asks between chunks, so a delete stops it early; :meth:`replace_set`
        checks again under the set's lock."""
        now = self.identity(name)
        if now != expect:
            raise _changed_meanwhile(name, now)

    def replace_set(self, name: str, labels: Sequence[str], templates: Sequence[str],
                    model: str, params: dict[str, Any], rows: LabelAssignments,
                    expect: int | object | None = ANY) -> None:
        """Store the set ``name`` in one transaction, replacing an earlier set of that
        name: readers see the old set or the new one, never half. The set's row keeps its
        id and stays locked to the commit, so a :meth:`delete_set` meanwhile waits and
        then deletes all of it. ``expect``: the :meth:`identity` the run saw at its start;
        when the set was deleted (or made) since, nothing is stored and
        :class:`CollectionError` says so."""
        _check_storable(name, labels)
        with self._catalog.session() as session:
            old = _locked_set_id(session, name)
            if expect is not ANY and old != expect:
                raise _changed_meanwhile(name, old)
            fields = {"labels": json.dumps(list(labels)), "templates": json.dumps(list(templates)),
                      "model": model, "params": json.dumps(params), "created_at": datetime.now()}
            if old is None:
                set_id = session.scalar(insert(LabelSet).values(name=name, **fields)
                                        .returning(LabelSet.id))
            else:
                session.execute(delete(ItemLabel).where(ItemLabel.set_id == old))
                session.execute(update(LabelSet).where(LabelSet.id == old).values(**fields))
                set_id = old
            label_of = list(labels)
            total = len(rows.item_ids)
            for start in range(0, total, _INSERT_CHUNK):
                stop = min(start + _INSERT_CHUNK, total)
                _insert_rows(session, zip(
                    [set_id] * (stop - start), rows.item_ids[start:stop].tolist(),
                    [label_of[c] for c in rows.cols[start:stop].tolist()],
                    rows.scores[start:stop].tolist(), rows.ranks[start:stop].tolist(), strict=True))
        log.info("label set %r: %d labels stored", name, total)

    def delete_set(self, name: str) -> None:
        """Delete the set and every label it gave; a run storing it meanwhile is waited for
        (its transaction holds the set's row), so no label of it is left behind."""
        with self._catalog.session() as session:
            old = _locked_set_id(session, name)
            if old is None:
                raise _missing(name)
            session.execute(delete(ItemLabel).where(ItemLabel.set_id == old))
            session.execute(delete(LabelSet).where(LabelSet.id == old))

    # -- reading -------------------------------------------------------------------
    def summary(self, name: str) -> LabelSetInfo:
        """A set's definition and how many items got each label."""
        with self._catalog.session() as session:
            row = (session.scalar(select(LabelSet).where(LabelSet.name == name))
                   if _storable(name, SET_NAME_WIDTH) else None)
            if row is None:
                raise _missing(name)
            return _info(session, row)

    def list_sets(self) -> list[LabelSetInfo]:
        with self._catalog.session() as session:
            return [_info(session, row)
                    for row in session.scalars(select(LabelSet).order_by(LabelSet.name))]

    def rows(self, name: str) -> list[LabelRow]:
        """Every stored label of the set, by item id then rank."""
        with self._catalog.session() as session:
            set_id = _set_id(session, name)
            if set_id is None:
                raise _missing(name)
            stmt = (select(ItemLabel.item_id, Item.path, ItemLabel.label, ItemLabel.score,
                           ItemLabel.rank)
                    .join(Item, Item.id == ItemLabel.item_id).where(ItemLabel.set_id == set_id)
                    .order_by(ItemLabel.item_id, ItemLabel.rank))
            return [LabelRow(*r) for r in session.execute(stmt)]

    def items_page(self, name: str, label: str, offset: int, k: int) -> tuple[int, list[LabelledItem]]:
        """``(total, page)``: indexed items the set gave ``label``, best score first, ties
        by id (stable pages). An unknown set raises :class:`NotFoundError`."""
        with self._catalog.session() as session:
            set_id = _set_id(session, name)
            if set_id is None:
                raise _missing(name)
            base = (select(Item.id).join(ItemLabel, ItemLabel.item_id == Item.id)
                    .where(ItemLabel.set_id == set_id, ItemLabel.label == label,
                           Item.status == ItemStatus.OK))
            total = int(session.scalar(select(func.count()).select_from(base.subquery())) or 0)
            stmt = (base.add_columns(Item.path, ItemLabel.score, Item.width, Item.height,
                                     Item.taken_at, Item.camera)
                    .order_by(ItemLabel.score.desc(), Item.id).offset(offset).limit(k))
            return total, [LabelledItem(*row) for row in session.execute(stmt)]

    def of_item(self, item_id: int) -> list[ItemLabelInfo]:
        """The labels every set gave one item, by set name then rank."""
        stmt = (select(LabelSet.name, ItemLabel.label, ItemLabel.score)
                .join(LabelSet, LabelSet.id == ItemLabel.set_id)
                .where(ItemLabel.item_id == item_id)
                .order_by(LabelSet.name, ItemLabel.rank, ItemLabel.score.desc()))
        with self._catalog.session() as session:
            return [ItemLabelInfo(s, lab, float(sc)) for s, lab, sc in session.execute(stmt)]


def label_condition(spec: str) -> Any:
    """Ids labelled ``LABEL`` (by any set) or ``SET:LABEL``, as a subquery."""
    set_name, sep, label = spec.partition(":")
    if not sep:
        set_name, label = "", spec
    stmt = select(ItemLabel.item_id).where(ItemLabel.label == label)
    if set_name:
        stmt = stmt.join(LabelSet, LabelSet.id == ItemLabel.set_id).where(LabelSet.name == set_name)
    return stmt


def _info(session: Session, row: LabelSet) -> LabelSetInfo:
    counts = dict(session.execute(
        select(ItemLabel.label, func.count()).where(ItemLabel.set_id == row.id)
        .group_by(ItemLabel.label)).all())
    labelled = session.scalar(select(func.count(func.distinct(ItemLabel.item_id)))
                              .where(ItemLabel.set_id == row.id)) or 0
    labels = json.loads(row.labels)
    return LabelSetInfo(row.name, labels, json.loads(row.templates), row.model,
                        json.loads(row.params or "{}"), row.created_at,
                        {lb: int(counts.get(lb, 0)) for lb in labels}, int(labelled))


def _insert_rows(session: Session, rows: Iterable[tuple[int, int, str, float, int]]) -> None:
    """Many ``item_labels`` rows at once: the driver's executemany on plain tuples
    (the ORM's per-row bookkeeping costs more than SQLite itself at a million rows)."""
    conn = session.connection()
    style = conn.dialect.paramstyle
    if style in ("qmark", "format", "pyformat"):
        mark = "?" if style == "qmark" else "%s"
        sql = (f"INSERT INTO {ItemLabel.__tablename__} (set_id, item_id, label, score, rank) "
               f"VALUES ({', '.join([mark] * 5)})")
        conn.exec_driver_sql(sql, list(rows))
        return
    keys = ("set_id", "item_id", "label", "score", "rank")
    session.execute(insert(ItemLabel), [dict(zip(keys, r, strict=True)) for r in rows])
