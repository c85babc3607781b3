"""Searches that run while an index run writes (the server's index job) use the index
the run keeps in step, instead of rebuilding it from the catalog after every batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipfind.indexer import index_paths
from clipfind.search import build_terms, search
from clipfind.store.collection import Collection
from tests.fakes import ColourEncoder, solid


class SearchingEncoder(ColourEncoder):
    """Runs a search each time it encodes a batch, like a concurrent request would."""

    def __init__(self) -> None:
        super().__init__()
        self.collection: Collection | None = None
        self.seen: list[int] = []

    def encode_pixels(self, pixels):  # type: ignore[no-untyped-def]
        if self.collection is not None:
            page = search(self.collection, self, build_terms("red"), k=50)
            self.seen.append(len(page.hits))
        return super().encode_pixels(pixels)


def test_search_during_run_uses_live_index(tmp_path: Path, fake_settings, monkeypatch):
    for i in range(12):
        solid(tmp_path / "p" / f"red{i}.png", (250 - i, 10, 10))
    coll = Collection(fake_settings)
    encoder = SearchingEncoder()
    index_paths(coll, ColourEncoder(), [tmp_path / "p" / "red0.png"])  # a first index on disk
    rebuilds = []
    real_rebuild = coll.rebuild_index
    monkeypatch.setattr(coll, "rebuild_index", lambda *a, **k: rebuilds.append(1) or real_rebuild(*a, **k))
    encoder.collection = coll
    index_paths(coll, encoder, [tmp_path / "p"], batch_size=4, workers=1)
    assert rebuilds == []
    assert encoder.seen and encoder.seen == sorted(encoder.seen)  # results grow batch by batch
    assert len(search(coll, encoder, build_terms("red"), k=50).hits) == 12


def test_failed_run_leaves_no_live_index(tmp_path: Path, fake_settings):
    solid(tmp_path / "p" / "a.png", "red")
    coll = Collection(fake_settings)

    class Broken(ColourEncoder):
        def encode_pixels(self, pixels):  # type: ignore[no-untyped-def]
            raise RuntimeError("device lost")

    with pytest.raises(RuntimeError):
        index_paths(coll, Broken(), [tmp_path / "p"])
    assert coll._live is None
    assert len(coll.vector_index()) == 0
