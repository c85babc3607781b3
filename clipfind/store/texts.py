"""Texts held by a collection (captions, descriptions) with their vectors, for image →
text search (``search.texts`` encodes and ranks; this module stores). A generation
counter in ``meta`` changes with every write, so a reader can keep the vectors in memory
until it moves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from clipfind.store import meta
from clipfind.store.schema import TextEntry
from clipfind.store.status import chunked

if TYPE_CHECKING:
    from clipfind.store.catalog import Catalog

_GENERATION_KEY = "texts_generation"
_MODEL_KEY = "texts_model"


@dataclass(frozen=True)
class StoredText:
    id: int
    key: str | None
    text: str


class TextStore:
    """The texts of one catalog (``catalog.texts``)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @property
    def generation(self) -> str:
        return self._catalog.get_meta(_GENERATION_KEY) or "0"

    @property
    def model(self) -> str | None:
        """The model the texts were embedded with (``None`` before the first text)."""
        return self._catalog.get_meta(_MODEL_KEY)

    def count(self) -> int:
        """How many texts the collection holds."""
        with self._catalog.session() as session:
            return int(session.scalar(select(func.count(TextEntry.id))) or 0)

    def keys(self) -> dict[str, int]:
        """Every stored text's key and id."""
        with self._catalog.session() as session:
            return dict(session.execute(select(TextEntry.key, TextEntry.id)).all())

    def upsert(self, rows: Sequence[tuple[int | None, str, str, bytes]], model: str) -> None:
        """Store ``(id or None, key, text, vector bytes)`` rows in one transaction: a row
        with an id replaces that text, one without adds a text."""
        with self._catalog.session() as session:
            for text_id, key, text, vector in rows:
                row = TextEntry(key=key, text=text, vector=vector)
                if text_id is not None:
                    row.id = text_id
                session.merge(row)
            self._bump(session)
            self._catalog.set_meta(_MODEL_KEY, model, session)

    def remove(self, ids: Sequence[int]) -> None:
        with self._catalog.session() as session:
            for chunk in chunked(list(ids)):
                session.execute(delete(TextEntry).where(TextEntry.id.in_(chunk)))
            self._bump(session)

    def vectors(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``(ids, vectors)`` of every text in id order (``(0, 0)`` vectors when none)."""
        with self._catalog.session() as session:
            rows = session.execute(select(TextEntry.id, TextEntry.vector).order_by(TextEntry.id)).all()
        ids = np.array([r[0] for r in rows], np.int64)
        if not rows:
            return ids, np.zeros((0, 0), np.float32)
        return ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def get(self, ids: Sequence[int]) -> dict[int, StoredText]:
        out: dict[int, StoredText] = {}
        with self._catalog.session() as session:
            for chunk in chunked(list(ids)):
                for row in session.scalars(select(TextEntry).where(TextEntry.id.in_(chunk))):
                    out[row.id] = StoredText(row.id, row.key, row.text)
        return out

    def _bump(self, session: Session) -> None:
        meta.modify(session, _GENERATION_KEY, "0", lambda v: str(int(v) + 1))
