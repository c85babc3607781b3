"""Writer claims in one process (clipfind/store/locks.py, pg_locks.py, meta.py): which
writers exclude each other on SQLite and on PostgreSQL, a killed writer's claim file, the
meta table written by concurrent transactions, and an older index never replacing a newer
saved one. The same rules between real processes: tests/test_pg_writers.py."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clipfind.config import Settings
from clipfind.errors import CollectionBusyError
from clipfind.store import meta
from clipfind.store.collection import Collection
from clipfind.store.locks import CLAIMS_DIR, Claim, holders
from clipfind.store.pg_locks import lock_names
from clipfind.store.vectors import VectorIndex


def test_claims_overlap_on_the_same_folder_a_nested_one_or_every_item() -> None:
    a = Claim(roots=("/p/a",))
    assert a.overlaps(Claim(roots=("/p/a",)))
    assert a.overlaps(Claim(roots=("/p/a/b",))) and Claim(roots=("/p/a/b",)).overlaps(a)
    assert a.overlaps(Claim(roots=("/p",))) and a.overlaps(Claim(roots=("/",)))
    assert not a.overlaps(Claim(roots=("/p/ab",)))  # a name prefix is not a folder inside
    assert not a.overlaps(Claim(roots=("/p/b", "/q")))
    assert a.overlaps(Claim(all_items=True)) and Claim(all_items=True).overlaps(a)
    assert Claim(all_items=True).overlaps(Claim(all_items=True))
    texts = Claim("text index run", texts=True)
    assert texts.overlaps(texts) and not texts.overlaps(a)
    assert not texts.overlaps(Claim(all_items=True))


def test_claims_use_the_folder_and_its_resolved_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    claim = Claim.items_under([tmp_path / "link"])
    assert claim.overlaps(Claim.items_under([tmp_path / "real" / "x"]))


def test_postgresql_lock_names_are_intention_locks() -> None:
    assert lock_names(("/p/a",), False, False) == {"items:/": False, "items:/p": False, "items:/p/a": True}
    assert lock_names((), True, False) == {"items:/": True}
    assert lock_names(("/p", "/p/a"), False, True) == {
        "texts": True,
        "items:/": False,
        "items:/p": True,
        "items:/p/a": True,
    }


def _pair(tmp_path: Path, url: str | None, shared: bool) -> tuple[Collection, Collection]:
    first = Collection(Settings(data_dir=tmp_path / "a", db_url=url))
    second = Collection(Settings(data_dir=tmp_path / ("a" if shared else "b"), db_url=url))
    return first, second


def test_on_sqlite_item_writers_take_turns_and_texts_go_on(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first, second = _pair(tmp_path, None, shared=True)
    busy = pytest.raises(
        CollectionBusyError, match=f"another index run is in progress \\(pid {os.getpid()}\\)"
    )
    with first.writing([tmp_path / "x"]):
        assert holders(first.settings.collection_dir) == [os.getpid()]
        with busy, second.writing([tmp_path / "y"]):  # SQLite: one item writer at a time
            pass
        with second.writing_texts():
            pass
    with second.writing([tmp_path / "y"]):
        pass
    first.close()
    second.close()


@pytest.mark.parametrize("shared", [True, False], ids=["one-folder", "two-folders"])
def test_on_postgresql_disjoint_folders_write_together(tmp_path, postgres_server, shared) -> None:  # type: ignore[no-untyped-def]
    first, second = _pair(tmp_path, postgres_server.new_database(), shared)
    photos = tmp_path / "photos"

    def busy(what: str = "index run"):  # type: ignore[no-untyped-def]
        return pytest.raises(CollectionBusyError, match=f"another {what} is in progress \\(pid {os.getpid()}")

    with first.writing([photos / "x"]):
        with second.writing([photos / "y"]), second.writing_texts():
            pass
        for overlapping in ([photos / "x"], [photos / "x" / "deeper"], [photos], None):
            with busy(), second.writing(overlapping):
                pass
        with busy(), second.writing(what="label run"):
            pass
    with second.writing(what="label run"), busy("label run"), first.writing([photos]):
        pass
    with first.writing_texts(), busy("text index run"), second.writing_texts():
        pass
    with second.writing([photos]):  # every claim above was let go
        pass
    first.close()
    second.close()


def test_a_killed_writers_claim_file_is_cleared(tmp_path) -> None:  # type: ignore[no-untyped-def]
    coll = Collection(Settings(data_dir=tmp_path / "d"))
    claims = coll.settings.collection_dir / CLAIMS_DIR
    claims.mkdir()
    stale = claims / "999999-1.json"  # nobody holds its flock: its writer is gone
    stale.write_text(json.dumps({"pid": 999999, "what": "index run", "all_items": True}))
    with coll.writing():
        assert not stale.exists() and holders(coll.settings.collection_dir) == [os.getpid()]
    assert holders(coll.settings.collection_dir) == []
    coll.close()


def _in_thread(fn) -> tuple[threading.Thread, list]:  # type: ignore[no-untyped-def]
    errors: list = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_meta_written_by_two_transactions_at_once(tmp_path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    coll = Collection(Settings(data_dir=tmp_path / "d", db_url=postgres_server.new_database()))
    catalog = coll.catalog
    # the first write of a key by two transactions: the second waits, then updates
    with catalog.session() as session:
        meta.upsert(session, "k", "first")
        thread, errors = _in_thread(lambda: catalog.set_meta("k", "second"))
        time.sleep(0.3)
    thread.join(60)
    assert not errors and catalog.get_meta("k") == "second"

    # a read-modify-write per writer, 2 × 15 at once: no change lost
    def add(tag: str) -> None:
        for i in range(15):
            catalog.modify_meta(
                "devices", "{}", lambda raw, i=i: json.dumps({**json.loads(raw), f"{tag}{i}": i})
            )
            catalog.modify_meta("n", "0", lambda raw: str(int(raw) + 1))

    runs = [_in_thread(lambda t=t: add(t)) for t in "ab"]
    for thread, errors in runs:
        thread.join(120)
        assert not errors, errors
    assert len(json.loads(catalog.get_meta("devices") or "{}")) == 30
    assert catalog.get_meta("n") == "30"
    coll.close()


def _index(generation: int, n: int) -> VectorIndex:
    vecs = np.eye(8, dtype=np.float32)[:n]
    return VectorIndex.build(np.arange(n, dtype=np.int64), vecs, 8, kind="flat", generation=generation)


def test_an_older_index_never_replaces_a_newer_saved_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "index.faiss"
    _index(5, 3).save(path, newest=lambda: 5)
    _index(4, 2).save(path, newest=lambda: 5)  # another process's, older: the newer file stays
    assert (VectorIndex.load(path).generation, len(VectorIndex.load(path))) == (5, 3)
    _index(5, 4).save(path, newest=lambda: 5)  # the same generation (a rebuild, a repair) replaces
    assert len(VectorIndex.load(path)) == 4
    _index(2, 1).save(path, newest=lambda: 2)  # a file ahead of the catalog (restored from a backup)
    assert VectorIndex.load(path).generation == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_a_label_run_is_refused_while_an_index_run_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from clipfind.search.zeroshot.labeling import label_collection
    from tests.fakes import ColourEncoder

    labeller, indexer = _pair(tmp_path, None, shared=True)
    with (
        indexer.writing([tmp_path / "photos"]),
        pytest.raises(CollectionBusyError, match="another index run is in progress"),
    ):
        label_collection(labeller, ColourEncoder(), ["red", "green"], name="colours")
    assert label_collection(labeller, ColourEncoder(), ["red", "green"], name="colours").scored == 0
    labeller.close()
    indexer.close()


def test_forget_claims_only_its_folders_on_postgresql(tmp_path, postgres_server) -> None:  # type: ignore[no-untyped-def]
    from clipfind.library import Clipfind
    from tests.fakes import ColourEncoder

    settings = Settings(data_dir=tmp_path / "d", db_url=postgres_server.new_database(), model="fake-colour")
    holder = Collection(settings)
    with Clipfind(settings, encoder=ColourEncoder()) as clip, holder.writing([tmp_path / "indexing"]):
        assert clip.forget(tmp_path / "elsewhere") == 0  # another folder: goes ahead
        with pytest.raises(CollectionBusyError, match="another index run is in progress"):
            clip.forget(tmp_path / "indexing" / "sub")
    holder.close()
