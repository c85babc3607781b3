"""Pages partition the ranking for any number of tied scores (exact duplicates tie):
paging through every offset returns each item exactly once, in score order, ties by
id, with and without filters. Through the real CLI on real SQLite and FAISS files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clipfind.api.cli import main
from tests.fakes import ColourEncoder, solid


@pytest.fixture
def search_pages(monkeypatch, tmp_path, capsys):  # type: ignore[no-untyped-def]
    import clipfind.api.cli.common as common

    encoder = ColourEncoder()
    monkeypatch.setattr(common, "make_encoder", lambda settings, coll: encoder)
    data = str(tmp_path / "data")

    def run(*argv: str) -> list[dict]:
        code = main([*argv, "--data-dir", data, "--json"])
        out = capsys.readouterr().out
        assert code == 0, out
        return json.loads(out).get("results", [])

    return run


def _collection(root: Path, photos: int, copies: int) -> None:
    for i in range(photos):
        solid(root / f"photo{i:02d}.png", (i * 23 % 256, 120, 255 - i * 19 % 256))
    original = solid(root / "dup" / "dog.png", (200, 180, 40))
    for i in range(copies):
        shutil.copyfile(original, root / "dup" / f"dog-copy{i}.png")


def _store_in_reverse(data_dir: Path) -> None:
    """Rewrite the saved index with its vectors stored in reverse id order, as updates
    (an item re-encoded goes to the end) and IVF lists leave them: FAISS then meets tied
    items in another order than their ids."""
    from clipfind.config import Settings
    from clipfind.store.collection import Collection
    from clipfind.store.vectors import VectorIndex

    coll = Collection(Settings(data_dir=data_dir))
    ids, vecs = next(coll.catalog.iter_vectors())
    index = VectorIndex.build(ids[::-1].copy(), vecs[::-1].copy(), vecs.shape[1],
                              generation=coll.catalog.generation)
    index.save(coll.settings.index_path)
    coll.close()


@pytest.mark.parametrize("filtered", [False, True])
def test_pages_of_one_return_every_item_once_despite_six_way_ties(tmp_path, search_pages,
                                                                   filtered):
    _collection(tmp_path / "p", photos=10, copies=5)  # 10 photos + 6 identical files
    search_pages("index", str(tmp_path / "p"))
    _store_in_reverse(tmp_path / "data")
    extra = ["--path", "*.png"] if filtered else []
    full = search_pages("search", "yellow", "-k", "100", *extra)
    assert len(full) == 16
    seen = []
    for offset in range(16):
        page = search_pages("search", "yellow", "-k", "1", "--offset", str(offset), *extra)
        assert len(page) == 1
        seen.append(page[0]["id"])
    assert sorted(seen) == sorted(h["id"] for h in full)  # each exactly once
    assert seen == [h["id"] for h in full]  # the same order as one big page
    ties = [h for h in full if h["path"].split("/")[-2] == "dup"]
    assert len({h["score"] for h in ties}) == 1 and len(ties) == 6
    assert [h["id"] for h in ties] == sorted(h["id"] for h in ties)  # ties by id


def test_pages_of_three_over_many_ties_and_a_filter(tmp_path, search_pages):
    _collection(tmp_path / "p", photos=4, copies=19)  # 20 identical files
    search_pages("index", str(tmp_path / "p"))
    _store_in_reverse(tmp_path / "data")
    full = search_pages("search", "yellow", "-k", "100", "--path", "*/dup/*")
    assert len(full) == 20
    pages = [search_pages("search", "yellow", "-k", "3", "--offset", str(o), "--path", "*/dup/*")
             for o in range(0, 21, 3)]
    ids = [h["id"] for page in pages for h in page]
    assert ids == sorted(ids) == [h["id"] for h in full]


def test_ranked_page_partitions_exact_ties_of_a_flat_index():
    from clipfind.search.engine import ranked_page
    from clipfind.store.vectors import VectorIndex

    vecs = np.tile(np.eye(8, dtype=np.float32)[0], (40, 1))  # 40 identical vectors
    index = VectorIndex.build(np.arange(40, 0, -1), vecs, 8)  # added in reverse id order
    pages = [ranked_page(index, vecs[0], k=4, offset=o) for o in range(0, 40, 4)]
    assert [i for page in pages for i, _ in page] == list(range(1, 41))
    allowed = np.arange(2, 41, 2)
    pages = [ranked_page(index, vecs[0], k=3, offset=o, allowed=allowed) for o in range(0, 21, 3)]
    assert [i for page in pages for i, _ in page] == list(range(2, 41, 2))
