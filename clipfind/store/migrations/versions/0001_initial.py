"""The catalog as clipfind 0.1 created it (``Base.metadata.create_all``): meta, items,
label_sets, item_labels, texts.

A frozen copy of those tables, not an import of ``schema.py``, so this revision stays
what it was when the models change. Each table and index is created only when missing:
a catalog from before migrations existed (no ``alembic_version`` table) is brought to
this revision in place, keeping its rows, and a catalog from an older build that lacked
a table (texts came later than items) gets it, as ``create_all`` used to do.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _tables() -> dict[str, tuple[list[sa.schema.SchemaItem], dict[str, object]]]:
    return {
        "meta": ([
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text(), nullable=False),
        ], {}),
        "items": ([
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("path", sa.Text(), nullable=False, unique=True),
            sa.Column("size", sa.BigInteger(), nullable=False),
            sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
            sa.Column("content_hash", sa.String(64), nullable=True),
            sa.Column("width", sa.Integer(), nullable=True),
            sa.Column("height", sa.Integer(), nullable=True),
            sa.Column("taken_at", sa.DateTime(), nullable=True),
            sa.Column("camera", sa.String(200), nullable=True),
            sa.Column("format", sa.String(16), nullable=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("skip_reason", sa.Text(), nullable=True),
            sa.Column("vector", sa.LargeBinary(), nullable=True),
            sa.Column("indexed_at", sa.DateTime(), nullable=False),
        ], {"sqlite_autoincrement": True}),  # ids are FAISS ids: never reuse one
        "label_sets": ([
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(100), nullable=False, unique=True),
            sa.Column("labels", sa.Text(), nullable=False),
            sa.Column("templates", sa.Text(), nullable=False),
            sa.Column("model", sa.Text(), nullable=False),
            sa.Column("params", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
        ], {}),
        "item_labels": ([
            sa.Column("set_id", sa.Integer(), sa.ForeignKey("label_sets.id", ondelete="CASCADE"),
                      primary_key=True),
            sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"),
                      primary_key=True),
            sa.Column("label", sa.String(200), primary_key=True),
            sa.Column("score", sa.Float(), nullable=False),
            sa.Column("rank", sa.Integer(), nullable=False),
        ], {}),
        "texts": ([
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("key", sa.String(200), nullable=True, unique=True),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("vector", sa.LargeBinary(), nullable=False),
        ], {"sqlite_autoincrement": True}),
    }


_INDEXES = [
    ("ix_items_status", "items", ["status"]),
    ("ix_items_hash", "items", ["content_hash"]),
    ("ix_items_taken_at", "items", ["taken_at"]),
    ("ix_item_labels_set_label", "item_labels", ["set_id", "label"]),
    ("ix_item_labels_item_id", "item_labels", ["item_id"]),
]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    for name, (columns, options) in _tables().items():  # in foreign-key order
        if name not in present:
            op.create_table(name, *columns, **options)
    for index, table, columns in _INDEXES:
        have = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}
        if index not in have:
            op.create_index(index, table, columns)


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
