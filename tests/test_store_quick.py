"""The one-shot read catalog (clipfind/store/quick.py): the reads a query makes answer as
the SQLAlchemy catalog answers them on the same file, everything else opens the full
catalog, and any catalog it cannot serve (missing, other revision, damaged, a URL the
user gave) is opened the full way, with the full way's errors."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from clipfind.errors import SchemaVersionError, StorageError
from clipfind.indexer import index_paths
from clipfind.store.catalog import Catalog
from clipfind.store.collection import Collection
from clipfind.store.quick import ItemRow, QuickCatalog, open_catalog
from tests.fakes import solid


@pytest.fixture
def collection(tmp_path, fake_settings, fake_encoder):  # type: ignore[no-untyped-def]
    """Three indexed photos and one skipped file, on the default SQLite catalog."""
    for colour in ("red", "green"):
        solid(tmp_path / "p" / f"{colour}.jpg", colour, size=(41, 29))
    exif = Image.Exif()  # a capture date and a camera: the columns a hit shows
    exif[306], exif[271], exif[272] = "2021:06:30 17:45:09", "Canon", "EOS 5D"
    Image.new("RGB", (33, 21), "blue").save(tmp_path / "p" / "blue.jpg", exif=exif)
    (tmp_path / "p" / "notes.jpg").write_text("not a picture")
    coll = Collection(fake_settings)
    index_paths(coll, fake_encoder, [tmp_path / "p"])
    coll.close()
    return fake_settings


def test_the_reads_a_query_makes_answer_as_the_full_catalog(collection) -> None:  # type: ignore[no-untyped-def]
    url = collection.database_url
    quick, full = open_catalog(url, in_data_dir=True), Catalog(url, in_data_dir=True)
    try:
        assert isinstance(quick, QuickCatalog)
        assert quick.shown_url == full.shown_url
        for key in ("collection", "model_spec", "model_dim", "model_probe", "generation", "nope"):
            assert quick.get_meta(key) == full.get_meta(key)
        assert quick.generation == full.generation > 0
        ids = list(range(0, 8))  # all items, and ids that are not there
        ours, theirs = quick.get_items(ids), full.get_items(ids)
        assert sorted(ours) == sorted(theirs) and len(ours) == 4
        for i, row in ours.items():
            assert isinstance(row, ItemRow)
            for name in (f.name for f in dataclasses.fields(ItemRow)):
                assert getattr(row, name) == getattr(theirs[i], name), name
        dated = [r for r in ours.values() if r.taken_at is not None]
        assert [(r.taken_at, r.camera) for r in dated] == [(datetime(2021, 6, 30, 17, 45, 9), "Canon EOS 5D")]
        assert all(r.indexed_at is not None for r in ours.values())
        assert {r.status for r in ours.values()} == {"ok", "skipped"}
        for i in ids:
            mine, ref = quick.vector_of(i), full.vector_of(i)
            assert (mine is None) == (ref is None)
            if ref is not None:
                assert mine.dtype == np.float32 and np.array_equal(mine, ref)
        assert quick._full is None  # none of this opened the full catalog
    finally:
        quick.close()
        full.close()


def test_anything_else_opens_the_full_catalog_and_then_every_read_goes_there(collection, tmp_path) -> None:  # type: ignore[no-untyped-def]
    quick = open_catalog(collection.database_url, in_data_dir=True)
    try:
        assert isinstance(quick, QuickCatalog)
        states = quick.states_under([tmp_path / "p"])  # not a quick read
        assert len(states) == 4 and isinstance(quick._full, Catalog) and quick._conn is None
        assert quick.get_meta("collection") == "default"  # now through the full catalog
        assert len(quick.get_items(s.id for s in states.values())) == 4
    finally:
        quick.close()


def test_reads_see_what_another_connection_commits(collection) -> None:  # type: ignore[no-untyped-def]
    quick = open_catalog(collection.database_url, in_data_dir=True)
    writer = Catalog(collection.database_url, in_data_dir=True)
    try:
        before = quick.generation
        with writer.session() as session:
            writer.bump_generation(session)
        assert quick.generation == before + 1
        assert quick._full is None
    finally:
        quick.close()
        writer.close()


def test_what_it_cannot_serve_opens_the_full_way(tmp_path, collection) -> None:  # type: ignore[no-untyped-def]
    fresh = tmp_path / "new" / "catalog.db"
    made = open_catalog(f"sqlite:///{fresh}", in_data_dir=True)  # missing: created, full
    assert isinstance(made, Catalog) and fresh.is_file()
    made.close()
    url = collection.database_url
    for kind in (open_catalog(url, in_data_dir=False), open_catalog(url + "?timeout=5", True)):
        assert isinstance(kind, Catalog)  # a URL the user gave is theirs to tune
        kind.close()
    with sqlite3.connect(collection.collection_dir / "catalog.db") as con:
        con.execute("UPDATE alembic_version SET version_num = 'f00d'")
    with pytest.raises(SchemaVersionError) as full:  # a revision it does not know
        Catalog(url, in_data_dir=True)
    with pytest.raises(SchemaVersionError) as ours:
        open_catalog(url, in_data_dir=True)
    assert str(ours.value) == str(full.value)


def test_a_damaged_catalog_gets_the_full_catalogs_message(tmp_path) -> None:
    damaged = tmp_path / "catalog.db"
    damaged.write_bytes(b"this is not a database, " * 200)
    url = f"sqlite:///{damaged}"
    with pytest.raises(StorageError) as full:
        Catalog(url, in_data_dir=True)
    with pytest.raises(StorageError) as ours:
        open_catalog(url, in_data_dir=True)
    assert str(ours.value) == str(full.value) and "damaged" in str(ours.value)
