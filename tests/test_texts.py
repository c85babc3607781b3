"""Image → text retrieval over texts held by the collection (colour encoder: known answers)."""

from __future__ import annotations

import json

import pytest

from clipfind.errors import QueryError
from clipfind.search.texts import index_texts, read_texts_file, search_texts
from clipfind.store.collection import Collection
from tests.fakes import ColourEncoder
from tests.pg import on_backend


@pytest.fixture
def fake_settings(request, fake_settings, backend):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL (tests/pg.py), a fresh catalog each."""
    return on_backend(request, fake_settings, backend)


def _vec(enc: ColourEncoder, rgb: tuple[int, int, int]):  # type: ignore[no-untyped-def]
    from PIL import Image

    return enc.encode_images([Image.new("RGB", (8, 8), rgb)])[0]


def test_read_texts_file_formats(tmp_path):
    plain = tmp_path / "t.txt"
    plain.write_text("a red car\n\n  a blue sea \n")
    assert read_texts_file(plain) == [(None, "a red car"), (None, "a blue sea")]
    table = tmp_path / "t.csv"
    table.write_text('id,caption\np1,"a red car, parked"\np2,a blue sea\n')
    assert read_texts_file(table) == [("p1", "a red car, parked"), ("p2", "a blue sea")]
    lines = tmp_path / "t.jsonl"
    lines.write_text(json.dumps({"id": 7, "text": "green grass"}) + "\n" + json.dumps("sky") + "\n")
    assert read_texts_file(lines) == [("7", "green grass"), (None, "sky")]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(QueryError, match="text"):
        read_texts_file(bad)


def test_image_ranks_matching_texts_first(fake_settings, fake_encoder):
    coll = Collection(fake_settings)
    texts = [("r", "a red apple"), ("g", "green grass"), ("b", "the blue sea"),
             ("y", "a yellow taxi"), (None, "grey concrete")]
    summary = index_texts(coll, fake_encoder, texts)
    assert (summary.added, summary.total) == (5, 5)
    for rgb, first in (((250, 5, 5), "a red apple"), ((5, 5, 250), "the blue sea"),
                       ((240, 240, 10), "a yellow taxi")):
        hits = search_texts(coll, _vec(fake_encoder, rgb), k=3)
        assert hits[0].text == first
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # re-indexing by key updates in place; --replace drops the rest
    again = index_texts(coll, fake_encoder, [("r", "a blue apple")], replace=True)
    assert (again.added, again.updated, again.removed, again.total) == (0, 1, 4, 1)
    hits = search_texts(coll, _vec(fake_encoder, (250, 5, 5)), k=5)
    assert [(h.key, h.text) for h in hits] == [("r", "a blue apple")]


def test_no_texts_is_a_clear_error(fake_settings, fake_encoder):
    coll = Collection(fake_settings)
    with pytest.raises(QueryError, match="index-texts"):
        search_texts(coll, _vec(fake_encoder, (1, 2, 3)), k=3)
