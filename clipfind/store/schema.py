"""SQLAlchemy tables of the catalog. Vectors are stored as raw float32 bytes so the
FAISS index can always be rebuilt from here.

A change here needs a migration beside it (``clipfind/store/migrations/versions``):
collections on disk are upgraded in place when they are opened."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from clipfind.store.status import LABEL_WIDTH, SET_NAME_WIDTH, ItemStatus

# Older names of the two statuses, kept for callers inside the store.
STATUS_OK = ItemStatus.OK
STATUS_SKIPPED = ItemStatus.SKIPPED


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key/value facts about the collection: model identity, generation counter."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Item(Base):
    """One file of the collection: an indexed image (``ok``) or a skipped file."""

    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_status", "status"),
        Index("ix_items_hash", "content_hash"),
        {"sqlite_autoincrement": True},  # ids are FAISS ids: never reuse one
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    camera: Mapped[str | None] = mapped_column(String(200), nullable=True)
    format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=STATUS_OK)
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    indexed_at: Mapped[datetime] = mapped_column(DateTime, default=datetime.now)


class LabelSet(Base):
    """A named zero-shot labeling of the collection (see ``search.labeling``)."""

    __tablename__ = "label_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(SET_NAME_WIDTH), unique=True)
    labels: Mapped[str] = mapped_column(Text)  # JSON list
    templates: Mapped[str] = mapped_column(Text)  # JSON list
    model: Mapped[str] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON: threshold, top, ...
    created_at: Mapped[datetime] = mapped_column(DateTime, default=datetime.now)


class ItemLabel(Base):
    """One label given to one item by one label set."""

    __tablename__ = "item_labels"
    __table_args__ = (Index("ix_item_labels_set_label", "set_id", "label"),)
    set_id: Mapped[int] = mapped_column(
        ForeignKey("label_sets.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    label: Mapped[str] = mapped_column(String(LABEL_WIDTH), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer, default=0)


class TextEntry(Base):
    """A text held by the collection (captions, descriptions) for image → text search."""

    __tablename__ = "texts"
    __table_args__ = ({"sqlite_autoincrement": True},)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    text: Mapped[str] = mapped_column(Text)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
