"""Incremental indexing on real files with the colour encoder: what is (not) re-encoded,
moves, deletes, duplicates, bad files, and the index that follows the catalog."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipfind.errors import CollectionError
from clipfind.indexer import index_paths
from clipfind.search import build_terms, search
from clipfind.store.collection import Collection
from clipfind.store.schema import STATUS_OK
from tests.fakes import solid
from tests.pg import on_backend

COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta")


@pytest.fixture
def fake_settings(request, fake_settings, backend):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL (tests/pg.py), a fresh catalog each."""
    return on_backend(request, fake_settings, backend)


def _photos(root: Path, colours: tuple[str, ...] = COLOURS) -> dict[str, Path]:
    return {c: solid(root / ("sub" if i % 2 else "") / f"{c}.jpg", c) for i, c in enumerate(colours)}


def _bomb_png(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", 30_000, 20_000, 8, 2, 0, 0, 0)  # 600 MP declared
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def _bad_files(root: Path) -> dict[str, str]:
    """Broken files of every kind → a word their skip reason must contain."""
    root.mkdir(parents=True, exist_ok=True)
    good = solid(root / "whole.jpg", "red", size=(400, 300))
    data = good.read_bytes()
    good.unlink()
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not a picture at all\n" * 10)
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    _bomb_png(root / "bomb.png")
    return {"empty.jpg": "empty", "notes.jpg": "not an image", "truncated.jpg": "truncated",
            "bomb.png": "too many pixels"}


def _index(coll: Collection, enc, *roots: Path, **kw):  # type: ignore[no-untyped-def]
    before = enc.images_encoded
    summary = index_paths(coll, enc, list(roots), **kw)
    return summary, enc.images_encoded - before


def _rows(coll: Collection) -> dict[str, tuple[int, bytes]]:
    from sqlalchemy import select

    from clipfind.store.schema import Item

    with coll.catalog.session() as s:
        return {r.path: (r.id, r.vector) for r in s.execute(
            select(Item.path, Item.id, Item.vector).where(Item.status == STATUS_OK))}


def _top(coll: Collection, enc, text: str, k: int = 1) -> list[str]:  # type: ignore[no-untyped-def]
    return [Path(h.path).name for h in search(coll, enc, build_terms(text), k=k).hits]


def test_good_images_indexed_bad_ones_reported(tmp_path, fake_settings, fake_encoder):
    photos = _photos(tmp_path / "p")
    reasons = _bad_files(tmp_path / "p" / "broken")
    coll = Collection(fake_settings)
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert summary.added == encoded == len(photos)
    skipped = {Path(p).name: r for p, r in summary.skipped}
    assert set(skipped) == set(reasons)
    for name, word in reasons.items():
        assert word in skipped[name], (name, skipped[name])
    assert coll.catalog.count() == len(photos)
    assert {Path(p).name for _, p, _ in coll.catalog.skipped()} == set(reasons)
    assert len(coll.vector_index()) == len(photos)
    # the skipped files are not retried while unchanged
    again, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (again.added, again.unchanged, encoded, again.skipped) == (0, len(photos), 0, [])
    assert again.still_skipped == len(reasons)  # apart: unchanged is what info calls indexed


def test_reindex_encodes_nothing_and_a_touch_reads_but_does_not_encode(
        tmp_path, fake_settings, fake_encoder):
    photos = _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    ids = _rows(coll)
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (encoded, summary.unchanged, summary.added, summary.updated) == (0, len(photos), 0, 0)
    st = photos["red"].stat()
    os.utime(photos["red"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (encoded, summary.unchanged, summary.updated) == (0, len(photos), 0)
    assert _rows(coll) == ids
    assert _top(coll, fake_encoder, "red") == ["red.jpg"]


def test_changed_content_is_re_encoded_under_the_same_id(tmp_path, fake_settings, fake_encoder):
    photos = _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    old_id = _rows(coll)[str(photos["red"])][0]
    solid(photos["red"], "black", size=(41, 30))  # now a black picture, still red.jpg
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (summary.updated, encoded) == (1, 1)
    assert _rows(coll)[str(photos["red"])][0] == old_id
    assert _top(coll, fake_encoder, "black") == ["red.jpg"]


def test_move_and_rename_keep_id_and_vector(tmp_path, fake_settings, fake_encoder):
    photos = _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    before = _rows(coll)
    target = tmp_path / "p" / "new" / "folder" / "crimson.jpg"
    target.parent.mkdir(parents=True)
    shutil.move(photos["red"], target)
    photos["blue"].rename(photos["blue"].with_name("azure.jpg"))
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (summary.moved, summary.removed, summary.added, encoded) == (2, 0, 0, 0)
    after = _rows(coll)
    assert after[str(target)] == before[str(photos["red"])]
    assert after[str(photos["blue"].with_name("azure.jpg"))] == before[str(photos["blue"])]
    assert str(photos["red"]) not in after
    assert _top(coll, fake_encoder, "red") == ["crimson.jpg"]


def test_deleted_files_leave_results_and_index(tmp_path, fake_settings, fake_encoder):
    photos = _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    photos["red"].unlink()
    summary, _ = _index(coll, fake_encoder, tmp_path / "p", prune=False)  # --keep-missing
    assert summary.removed == 0 and coll.catalog.count() == len(photos)
    summary, _ = _index(coll, fake_encoder, tmp_path / "p")
    assert summary.removed == 1
    assert "red.jpg" not in _top(coll, fake_encoder, "red", k=10)
    assert len(coll.vector_index()) == len(photos) - 1 == coll.catalog.count()


def test_duplicates_reuse_the_vector(tmp_path, fake_settings, fake_encoder):
    photos = _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    copy = shutil.copy(photos["green"], tmp_path / "p" / "green copy.jpg")
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (summary.added, encoded) == (1, 0)
    rows = _rows(coll)
    assert rows[str(copy)][1] == rows[str(photos["green"])][1]
    assert rows[str(copy)][0] != rows[str(photos["green"])][0]
    assert set(_top(coll, fake_encoder, "green", k=2)) == {"green.jpg", "green copy.jpg"}


def test_duplicates_within_one_run_are_encoded_once(tmp_path, fake_settings, fake_encoder):
    src = solid(tmp_path / "p" / "a.jpg", "blue")
    for i in range(9):
        shutil.copy(src, tmp_path / "p" / f"copy{i}.jpg")
    coll = Collection(fake_settings)
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (summary.added, encoded) == (10, 1)
    assert len({v for _, v in _rows(coll).values()}) == 1
    assert len(coll.vector_index()) == 10


def test_a_prefix_in_another_case_is_another_folder(tmp_path, fake_settings, fake_encoder):
    lower = _photos(tmp_path / "x" / "a", ("red",))
    upper = _photos(tmp_path / "x" / "A", ("blue",))
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "x" / "a")
    _index(coll, fake_encoder, tmp_path / "x" / "A")
    summary, _ = _index(coll, fake_encoder, tmp_path / "x" / "a")
    assert summary.removed == 0
    assert set(_rows(coll)) == {str(lower["red"]), str(upper["blue"])}


def test_a_missing_root_is_an_error_and_changes_nothing(tmp_path, fake_settings, fake_encoder):
    _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    generation = coll.catalog.generation
    with pytest.raises(CollectionError, match="does not exist"):
        index_paths(coll, fake_encoder, [tmp_path / "p", tmp_path / "unmounted"])
    assert coll.catalog.generation == generation and coll.catalog.count() == len(COLOURS)


def test_exif_metadata_and_upright_size_are_stored(tmp_path, fake_settings, fake_encoder):
    exif = Image.Exif()
    exif[274], exif[271], exif[272] = 6, "FUJIFILM", "X-T3"
    exif.get_ifd(0x8769)[36867] = "2021:06:30 18:00:00"
    path = tmp_path / "p" / "portrait.jpg"
    path.parent.mkdir()
    Image.new("RGB", (60, 40), (200, 0, 0)).save(path, exif=exif.tobytes())
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    item = next(iter(coll.catalog.get_items([1]).values()))
    assert (item.width, item.height, item.camera) == (40, 60, "FUJIFILM X-T3")
    assert item.taken_at.isoformat() == "2021-06-30T18:00:00"
    assert item.content_hash and item.size == path.stat().st_size


def _assert_index_matches_catalog(coll: Collection) -> None:
    index = coll.vector_index()
    ids, vecs = next(coll.catalog.iter_vectors())
    assert len(index) == len(ids)
    for item_id, vec in zip(ids, vecs, strict=True):
        scores, found = index.search(vec, 1)
        assert int(found[0]) == int(item_id) or scores[0] > 0.9999  # itself (or its twin)
        assert np.allclose(index.reconstruct(int(item_id)), vec, atol=1e-6)


def test_index_follows_each_run_in_place_without_a_rebuild(tmp_path, fake_settings,
                                                           fake_encoder, monkeypatch):
    photos = _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")

    def no_rebuild(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("the index was rebuilt from the catalog")

    monkeypatch.setattr(coll, "rebuild_index", no_rebuild)
    photos["red"].unlink()
    photos["blue"].rename(tmp_path / "p" / "b2.jpg")
    solid(photos["green"], "white", size=(41, 30))
    shutil.copy(photos["cyan"], tmp_path / "p" / "c2.jpg")
    solid(tmp_path / "p" / "new" / "black.png", "black")
    _bad_files(tmp_path / "p" / "broken")
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert (summary.removed, summary.moved, summary.updated, summary.added, encoded) == \
        (1, 1, 1, 2, 2)
    _assert_index_matches_catalog(coll)
    assert _top(coll, fake_encoder, "white") == ["green.jpg"]
    # a fresh process loads the saved file: same generation, nothing to rebuild
    other = Collection(fake_settings)
    monkeypatch.setattr(other, "rebuild_index", no_rebuild)
    assert len(other.vector_index()) == len(coll.vector_index())


def test_another_writer_between_batches_makes_the_run_rebuild(tmp_path, fake_settings,
                                                              fake_encoder, monkeypatch):
    import clipfind.indexer.run as run

    _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    _photos(tmp_path / "q", ("black", "white"))
    real_write = run.write_batch

    def write_and_interleave(catalog, batch, vectors):  # type: ignore[no-untyped-def]
        with catalog.session() as s:  # e.g. `clipfind forget` from another shell
            catalog.bump_generation(s)
        return real_write(catalog, batch, vectors)

    monkeypatch.setattr(run, "write_batch", write_and_interleave)
    rebuilt = []
    real_rebuild = coll.rebuild_index
    monkeypatch.setattr(coll, "rebuild_index", lambda *a: rebuilt.append(1) or real_rebuild(*a))
    _index(coll, fake_encoder, tmp_path / "q")
    assert rebuilt
    _assert_index_matches_catalog(coll)


def test_an_image_that_turns_bad_leaves_the_index(tmp_path, fake_settings, fake_encoder,
                                                   monkeypatch):
    photos = _photos(tmp_path / "p")
    coll = Collection(fake_settings)
    _index(coll, fake_encoder, tmp_path / "p")
    monkeypatch.setattr(coll, "rebuild_index", lambda *a: pytest.fail("rebuilt"))
    photos["red"].write_bytes(photos["red"].read_bytes()[:100])  # a sync tool cut it short
    summary, encoded = _index(coll, fake_encoder, tmp_path / "p")
    assert [Path(p).name for p, _ in summary.skipped] == ["red.jpg"] and encoded == 0
    assert "red.jpg" not in _top(coll, fake_encoder, "red", k=10)
    assert len(coll.vector_index()) == len(COLOURS) - 1
    assert [Path(p).name for _, p, _ in coll.catalog.skipped()] == ["red.jpg"]
