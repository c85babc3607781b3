"""The catalog's schema version: a catalog written before migrations existed opens with
nothing lost, a catalog newer than the code is refused untouched (exit 7), and the
migrations build exactly the tables ``schema.py`` declares."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipfind.config import Settings
from clipfind.errors import SchemaVersionError
from clipfind.search import build_terms, search
from clipfind.search.texts import search_texts
from clipfind.search.zeroshot.labeling import label_rows, list_label_sets
from clipfind.store.catalog import Catalog
from clipfind.store.collection import Collection
from clipfind.store.migrate import SCHEMA_REVISION, current_revision, head_revision
from tests.fakes import ColourEncoder

FIXTURE = Path(__file__).parent / "fixtures" / "catalog_v0.sql"


def _restore(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript(FIXTURE.read_text())
    conn.close()


def _raw(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def old_collection(tmp_path: Path) -> tuple[Settings, Path]:
    """The fixture catalog (written by clipfind before migrations) as a collection."""
    settings = Settings(data_dir=tmp_path / "data", model="fake-colour", workers=1)
    db = settings.collection_dir / "catalog.db"
    _restore(db)
    return settings, db


def test_catalog_from_before_migrations_opens_with_nothing_lost(old_collection) -> None:  # type: ignore[no-untyped-def]
    settings, db = old_collection
    items = _raw(db, "SELECT id, path, status, vector, content_hash, width, taken_at FROM items")
    sets = _raw(db, "SELECT name, labels, params FROM label_sets")
    labels = _raw(db, "SELECT s.name, l.item_id, l.label, l.score, l.rank FROM item_labels l "
                      "JOIN label_sets s ON s.id = l.set_id")
    texts = _raw(db, "SELECT id, key, text, vector FROM texts")
    assert (len(items), len(sets), len(labels), len(texts)) == (15, 2, 23, 3)
    assert "alembic_version" not in {r[0] for r in _raw(db, "SELECT name FROM sqlite_master")}

    collection = Collection(settings)
    try:
        assert current_revision(collection.catalog.engine) == head_revision()
        # every row is still there, byte for byte
        assert _raw(db, "SELECT id, path, status, vector, content_hash, width, taken_at "
                        "FROM items") == items
        assert _raw(db, "SELECT id, key, text, vector FROM texts") == texts
        # ... and the store's methods find them
        catalog = collection.catalog
        assert catalog.count() == 14 and len(catalog.skipped()) == 1
        ids, vecs = next(catalog.iter_vectors())
        assert ids.tolist() == [r[0] for r in items if r[2] == "ok"]
        assert vecs.tobytes() == b"".join(r[3] for r in items if r[2] == "ok")
        found = {s.name: s for s in list_label_sets(catalog)}
        assert found["colours"].counts == {"red": 4, "green": 3, "blue": 3, "yellow": 3}
        assert found["warm-cold"].params["multi_label"] is True
        assert sorted((r.item_id, r.label, r.score, r.rank)
                      for n in found for r in label_rows(catalog, n)) == \
            sorted((i, lab, s, rk) for _, i, lab, s, rk in labels)
        assert catalog.texts.keys() == {k: i for i, k, _, _ in texts}
        # the collection is searchable as it was: same model, index rebuilt from the rows
        encoder = ColourEncoder()
        page = search(collection, encoder, build_terms("red"), k=4)
        assert {Path(h.path).parent.name for h in page.hits} <= {"red", "photos"}
        assert len(page.hits) == 4
        hits = search_texts(collection, encoder.encode_texts(["green"])[0], k=1)
        assert hits[0].key == "t3"
        red = catalog.ids_matching(label="colours:red")
        assert len(red) == 4
    finally:
        collection.close()
    # opening again is a no-op at the code's revision
    again = Catalog(f"sqlite:///{db}")
    assert current_revision(again.engine) == SCHEMA_REVISION
    again.close()


def test_new_catalog_is_created_at_the_code_revision(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    assert current_revision(catalog.engine) == head_revision() == SCHEMA_REVISION
    assert catalog.count() == 0 and catalog.texts.keys() == {}
    catalog.close()


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    """A change to ``schema.py`` without a migration beside it fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from clipfind.store.schema import Base

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    catalog.close()
    assert diff == []


def _make_newer(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.commit()
    conn.close()


def test_catalog_newer_than_the_code_is_refused_untouched(old_collection) -> None:  # type: ignore[no-untyped-def]
    settings, db = old_collection
    Catalog(f"sqlite:///{db}").close()
    _make_newer(db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(SchemaVersionError) as err:
        Collection(settings)
    assert err.value.exit_code == 7
    message = str(err.value)
    assert "newer version of clipfind" in message and "9999_from_the_future" in message
    assert SCHEMA_REVISION in message
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert _raw(db, "SELECT version_num FROM alembic_version") == [("9999_from_the_future",)]


def test_cli_refuses_a_newer_catalog_in_one_line_exit_7(old_collection) -> None:  # type: ignore[no-untyped-def]
    settings, db = old_collection
    Catalog(f"sqlite:///{db}").close()
    _make_newer(db)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("clipfind")), "info", "--data-dir",
         str(settings.data_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 7, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "newer version of clipfind" in lines[0]


def test_vectors_survive_as_float32(old_collection) -> None:  # type: ignore[no-untyped-def]
    """The dump's vectors are the ColourEncoder's: unit length after the upgrade."""
    settings, _ = old_collection
    catalog = Catalog(settings.database_url)
    _, vecs = next(catalog.iter_vectors())
    catalog.close()
    assert vecs.shape == (14, 8)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


# -- PostgreSQL: the same upgrade in place, on the session's throw-away server (tests/pg.py)
def test_postgresql_catalog_from_before_migrations_is_upgraded_in_place(postgres_server) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from clipfind.store.schema import Base, Item, ItemLabel, LabelSet, TextEntry

    url = postgres_server.new_database()
    engine = create_engine(url)
    Base.metadata.create_all(engine)  # how clipfind made a catalog before migrations
    vector = np.arange(8, dtype=np.float32).tobytes()
    with Session(engine) as s, s.begin():
        s.add(Item(path="/p/a.png", size=1, mtime_ns=1, status="ok", vector=vector,
                   indexed_at=datetime.now()))
        s.add(LabelSet(name="set", labels='["a"]', templates="[]", model="m", params="{}",
                       created_at=datetime.now()))
        s.flush()
        s.add(ItemLabel(set_id=1, item_id=1, label="a", score=0.5, rank=0))
        s.add(TextEntry(key="k", text="a text", vector=vector))
    engine.dispose()

    catalog = Catalog(url)
    assert current_revision(catalog.engine) == SCHEMA_REVISION
    assert catalog.vector_of(1).tobytes() == vector
    assert catalog.labels.summary("set").counts == {"a": 1}
    assert catalog.texts.keys() == {"k": 1}
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    catalog.close()
    with pytest.raises(SchemaVersionError, match="newer version of clipfind"):
        Catalog(url)


def test_processes_opening_one_new_catalog_at_once_all_succeed(tmp_path: Path, request, backend) -> None:  # type: ignore[no-untyped-def]
    """A server and a CLI started together: one creates the tables, the others wait
    for it (without the schema lock, the losers failed on 'table already exists')."""
    from clipfind.store.migrate import current_revision
    from tests.pg import db_url

    url = db_url(request, backend) or f"sqlite:///{tmp_path / 'c.db'}"
    code = (f"from clipfind.store.catalog import Catalog\n"
            f"c = Catalog({url!r})\nprint(c.count())\nc.close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert all(rc == 0 and out.strip() == "0" for rc, out, _ in results), results
    catalog = Catalog(url)
    assert current_revision(catalog.engine) == SCHEMA_REVISION
    catalog.close()
