"""Index a folder with the colour encoder and search it: results we can predict."""

from __future__ import annotations

from pathlib import Path

from clipfind.indexer import index_paths
from clipfind.search import Filters, build_terms, search
from clipfind.store.collection import Collection
from tests.fakes import solid


def _collection(fake_settings, fake_encoder, root: Path) -> Collection:  # type: ignore[no-untyped-def]
    coll = Collection(fake_settings)
    index_paths(coll, fake_encoder, [root])
    return coll


def test_text_query_ranks_matching_colour_first(tmp_path, fake_settings, fake_encoder):
    for colour in ("red", "green", "blue", "yellow"):
        solid(tmp_path / "photos" / f"{colour}.jpg", colour)
    coll = _collection(fake_settings, fake_encoder, tmp_path / "photos")
    for colour in ("red", "green", "blue", "yellow"):
        page = search(coll, fake_encoder, build_terms(f"a {colour} thing"), k=4)
        assert Path(page.hits[0].path).stem == colour
        assert page.hits[0].score > page.hits[1].score


def test_negative_term_pushes_away(tmp_path, fake_settings, fake_encoder):
    solid(tmp_path / "p" / "yellow.png", "yellow")
    solid(tmp_path / "p" / "red.png", "red")
    solid(tmp_path / "p" / "green.png", "green")
    coll = _collection(fake_settings, fake_encoder, tmp_path / "p")
    plain = search(coll, fake_encoder, build_terms("yellow"), k=3)
    assert Path(plain.hits[0].path).stem == "yellow"
    # yellow minus red leans to green
    steered = search(coll, fake_encoder, build_terms("yellow - 2:red"), k=3)
    assert Path(steered.hits[0].path).stem == "green"


def test_filters_apply_before_top_k(tmp_path, fake_settings, fake_encoder):
    for i in range(6):
        solid(tmp_path / "p" / "a" / f"red{i}.png", "red")
    solid(tmp_path / "p" / "b" / "blue.png", "blue")
    coll = _collection(fake_settings, fake_encoder, tmp_path / "p")
    page = search(coll, fake_encoder, build_terms("red"), k=2, filters=Filters(path="*/b/*"))
    assert [Path(h.path).stem for h in page.hits] == ["blue"]


def test_pages_are_stable_and_disjoint(tmp_path, fake_settings, fake_encoder):
    for i in range(9):
        solid(tmp_path / "p" / f"img{i}.png", (200 + i * 5, 30 * (i % 3), 10))
    coll = _collection(fake_settings, fake_encoder, tmp_path / "p")
    full = search(coll, fake_encoder, build_terms("red"), k=9)
    pages = [search(coll, fake_encoder, build_terms("red"), k=3, offset=o) for o in (0, 3, 6)]
    assert [h.id for p in pages for h in p.hits] == [h.id for h in full.hits]


def test_image_example_and_item_id_queries(tmp_path, fake_settings, fake_encoder):
    solid(tmp_path / "p" / "blue.png", "blue")
    solid(tmp_path / "p" / "red.png", "red")
    example = solid(tmp_path / "example.png", "blue")
    coll = _collection(fake_settings, fake_encoder, tmp_path / "p")
    by_file = search(coll, fake_encoder, build_terms(images=[str(example)]), k=1)
    assert Path(by_file.hits[0].path).stem == "blue"
    red_id = next(h.id for h in search(coll, fake_encoder, build_terms("red"), k=2).hits
                  if Path(h.path).stem == "red")
    by_id = search(coll, fake_encoder, build_terms(images=[f"#{red_id}"]), k=1)
    assert by_id.hits[0].id == red_id
    assert by_id.hits[0].score > 0.999
