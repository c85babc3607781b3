"""Alembic environment of the catalog. clipfind runs it itself when a collection is
opened (``clipfind.store.migrate``), handing over an open connection; a developer making
a new revision runs ``alembic -c clipfind/store/migrations/alembic.ini revision
--autogenerate -m "..."`` against a scratch catalog (``-x url=sqlite:///scratch.db``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from clipfind.store.schema import Base

config = context.config
# SQLite cannot ALTER most things: batch mode copies the table, which works everywhere.
_OPTIONS = {"target_metadata": Base.metadata, "render_as_batch": True}

connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, **_OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
