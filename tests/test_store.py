"""The store: model identity, the FAISS index derived from the catalog (missing, stale,
crash between commit and save), database URLs and collections side by side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipfind.config import Settings
from clipfind.errors import ModelMismatchError
from clipfind.indexer import index_paths
from clipfind.search import build_terms, search
from clipfind.store.collection import Collection
from clipfind.store.vectors import VectorIndex
from tests.fakes import DIM, ColourEncoder, solid
from tests.pg import on_backend


@pytest.fixture
def fake_settings(request, fake_settings, backend):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL (tests/pg.py), a fresh catalog each."""
    return on_backend(request, fake_settings, backend)


class OtherEncoder(ColourEncoder):
    """Another model: the same colours in a rotated space."""

    spec = "other-model"

    def _rotate(self, rows: np.ndarray) -> np.ndarray:
        return np.roll(rows, 2, axis=1)

    def encode_pixels(self, pixels):  # type: ignore[no-untyped-def]
        return self._rotate(super().encode_pixels(pixels))

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        return self._rotate(super().encode_texts(texts))


class WideEncoder(ColourEncoder):
    spec = "wide-model"

    def encode_pixels(self, pixels):  # type: ignore[no-untyped-def]
        return np.pad(super().encode_pixels(pixels), ((0, 0), (0, 8)))

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        return np.pad(super().encode_texts(texts), ((0, 0), (0, 8)))


@pytest.fixture
def indexed(tmp_path, fake_settings, fake_encoder):  # type: ignore[no-untyped-def]
    for colour in ("red", "green", "blue"):
        solid(tmp_path / "p" / f"{colour}.jpg", colour)
    coll = Collection(fake_settings)
    index_paths(coll, fake_encoder, [tmp_path / "p"])
    return coll


def _names(coll: Collection, enc, text: str, k: int = 3) -> list[str]:  # type: ignore[no-untyped-def]
    return [Path(h.path).name for h in search(coll, enc, build_terms(text), k=k).hits]


# -- model identity ------------------------------------------------------------------------
@pytest.mark.parametrize("other", [OtherEncoder, WideEncoder])
def test_another_model_is_refused_naming_both(indexed, tmp_path, other):
    with pytest.raises(ModelMismatchError) as err:
        search(indexed, other(), build_terms("red"))
    assert "fake-colour" in str(err.value) and other.spec in str(err.value)
    assert "--reembed" in str(err.value)
    with pytest.raises(ModelMismatchError):
        index_paths(indexed, other(), [tmp_path / "p"])
    assert indexed.stored_model == "fake-colour"


def test_reembed_switches_the_collection_to_the_new_model(indexed, tmp_path, fake_encoder):
    wide = WideEncoder()
    summary = index_paths(indexed, wide, [tmp_path / "p"], reembed=True)
    assert summary.encoded == 3 and wide.images_encoded == 3
    assert (indexed.stored_model, indexed.stored_dim) == ("wide-model", DIM + 8)
    assert _names(indexed, wide, "blue", k=1) == ["blue.jpg"]
    assert indexed.vector_index().dim == DIM + 8
    with pytest.raises(ModelMismatchError):
        search(indexed, fake_encoder, build_terms("red"))


def test_the_same_model_under_its_own_name_is_accepted(indexed, tmp_path):
    again = ColourEncoder()
    summary = index_paths(Collection(indexed.settings), again, [tmp_path / "p"])
    assert summary.unchanged == 3 and again.images_encoded == 0


# -- the FAISS index --------------------------------------------------------------------------
def test_index_file_rebuilt_when_missing_or_unreadable(indexed, fake_encoder):
    path = indexed.settings.index_path
    assert path.is_file() and not list(path.parent.glob("*.tmp"))  # saved, atomically
    expected = _names(indexed, fake_encoder, "red")
    path.unlink()
    fresh = Collection(indexed.settings)
    assert _names(fresh, fake_encoder, "red") == expected and path.is_file()
    path.write_bytes(b"garbage, half a write from some other tool")
    fresh = Collection(indexed.settings)
    assert _names(fresh, fake_encoder, "red") == expected
    assert VectorIndex.load(path) is not None


def test_crash_between_catalog_commit_and_index_save_is_repaired(indexed, tmp_path,
                                                                 fake_encoder, monkeypatch):
    solid(tmp_path / "p" / "yellow.jpg", "yellow")

    def crash(self, path, newest=None):  # type: ignore[no-untyped-def]
        raise SystemExit("power cut")

    monkeypatch.setattr(VectorIndex, "save", crash)
    with pytest.raises(SystemExit):
        index_paths(indexed, fake_encoder, [tmp_path / "p"])
    monkeypatch.undo()
    side = json.loads(indexed.settings.index_path.with_suffix(".json").read_text())
    fresh = Collection(indexed.settings)  # a new process
    assert side["generation"] < fresh.catalog.generation  # the file on disk is stale
    assert _names(fresh, fake_encoder, "yellow", k=1) == ["yellow.jpg"]
    assert len(fresh.vector_index()) == 4
    side = json.loads(indexed.settings.index_path.with_suffix(".json").read_text())
    assert side["generation"] == fresh.catalog.generation


def test_index_ids_are_catalog_primary_keys(indexed):
    index = indexed.vector_index()
    for item_id, vec in zip(*next(indexed.catalog.iter_vectors()), strict=True):
        _, ids = index.search(vec, 1)
        item = indexed.catalog.get_item(int(ids[0]))
        assert int(ids[0]) == int(item_id) and item is not None
        assert np.allclose(indexed.catalog.vector_of(item.id), vec)


# -- databases and collections -------------------------------------------------------------------
def test_any_sqlalchemy_url_and_collections_side_by_side(tmp_path, fake_encoder):
    for colour in ("red", "green"):
        solid(tmp_path / "a" / f"{colour}.jpg", colour)
    solid(tmp_path / "b" / "blue.jpg", "blue")
    data = tmp_path / "data"
    db = tmp_path / "elsewhere" / "catalog.sqlite"
    first = Collection(Settings(data_dir=data, collection="holidays", db_url=f"sqlite:///{db}"))
    second = Collection(Settings(data_dir=data, collection="work"))
    index_paths(first, fake_encoder, [tmp_path / "a"])
    index_paths(second, fake_encoder, [tmp_path / "b"])
    assert db.is_file() and not (data / "collections" / "holidays" / "catalog.db").exists()
    assert (data / "collections" / "work" / "catalog.db").is_file()
    assert (data / "collections" / "holidays" / "index.faiss").is_file()
    assert sorted(_names(first, fake_encoder, "red")) == ["green.jpg", "red.jpg"]
    assert _names(second, fake_encoder, "red") == ["blue.jpg"]
    # reopened from the URL alone, the first collection is all there
    again = Collection(Settings(data_dir=data, collection="holidays", db_url=f"sqlite:///{db}"))
    assert again.catalog.count() == 2 and again.stored_model == "fake-colour"


def test_two_collections_cannot_share_one_database(tmp_path):
    from clipfind.errors import CollectionError

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Collection(Settings(data_dir=tmp_path, collection="holidays", db_url=url))
    with pytest.raises(CollectionError, match="holds collection 'holidays'"):
        Collection(Settings(data_dir=tmp_path, collection="work", db_url=url))
    Collection(Settings(data_dir=tmp_path, collection="holidays", db_url=url))  # its owner


@pytest.mark.parametrize("url", ["nonsense://", "postgresql+psycopg://me:hunter2@127.0.0.1:1/db",
                                 "sqlite:////proc/no/such/dir/x.db"])
def test_an_unusable_database_url_is_one_clear_error(tmp_path, url):
    from clipfind.errors import CollectionError

    with pytest.raises(CollectionError, match="Cannot open the catalog database") as err:
        Collection(Settings(data_dir=tmp_path, db_url=url))
    assert "hunter2" not in str(err.value) and "--db-url" in str(err.value)


def test_a_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir="rel/data")
    assert settings.data_dir == tmp_path / "rel" / "data"
    assert settings.database_url == f"sqlite:///{tmp_path}/rel/data/collections/default/catalog.db"


def test_get_items_leaves_the_vectors_behind(fake_settings, fake_encoder, tmp_path):
    """A result page needs paths and metadata, not 2 KB vectors per hit; reading a vector
    from such an item raises instead of silently querying a closed session."""
    import sqlalchemy.exc

    solid(tmp_path / "p" / "red.png", "red")
    coll = Collection(fake_settings)
    index_paths(coll, fake_encoder, [tmp_path / "p"])
    item = next(iter(coll.catalog.get_items([1]).values()))
    assert item.path.endswith("red.png") and item.width == 40
    with pytest.raises(sqlalchemy.exc.SQLAlchemyError):
        _ = item.vector
    assert coll.catalog.vector_of(1) is not None
