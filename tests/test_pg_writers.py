"""Two ``clipfind index`` runs on two folders into one PostgreSQL collection at the same
time. The collection has one writer at a time (clipfind/store/locks.py): the second run is
refused at once with the holder named (exit 7), having written nothing, while the first
completes; run again, it completes too, and every picture of both folders is in the
catalog exactly once. On one machine the lock file refuses it; on two machines sharing
the catalog but not the folder, PostgreSQL's advisory lock does. A reader searching
meanwhile always sees a consistent collection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clipfind.config import Settings
from clipfind.search import build_terms, search
from clipfind.store.collection import Collection
from tests.fakes import ColourEncoder
from tests.pg_procs import clipfind, fill, finish, stop

N = 20


def _wait_for_lock(proc, folder: Path) -> None:  # type: ignore[no-untyped-def]
    from clipfind.store.locks import holders

    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if proc.pid in holders(folder):
            return
        time.sleep(0.05)
    raise AssertionError(f"the first run did not take the lock: {stop(proc)[-2000:]}")


def _paths(coll: Collection) -> list[str]:
    with coll.catalog.session() as session:
        from sqlalchemy import text

        return [r[0] for r in session.execute(text("SELECT path FROM items ORDER BY path"))]


@pytest.mark.parametrize("shared_folder", [True, False], ids=["one-machine", "two-machines"])
def test_two_index_runs_into_one_postgresql_collection(tmp_path, postgres_server, shared_folder):  # type: ignore[no-untyped-def]
    url = postgres_server.new_database()
    first, second = tmp_path / "first", tmp_path / "second"
    fill(first, N)
    fill(second, N, start=N)
    data_a = tmp_path / "data-a"
    data_b = data_a if shared_folder else tmp_path / "data-b"
    args = ("--db-url", url, "--model", "fake-colour", "--json")
    gate = tmp_path / "go"  # the first run encodes nothing until the second was refused
    writer = clipfind("index", str(first), "--data-dir", str(data_a), *args, delay=0.2,
                      gate=gate)
    _wait_for_lock(writer, data_a / "collections" / "default")

    refused = clipfind("index", str(second), "--data-dir", str(data_b), *args)
    err = finish(refused)
    assert refused.returncode == 7, err
    assert "another index run is in progress" in err and "Traceback" not in err
    assert f"(pid {writer.pid}" in err  # the claim file's pid, or the lock connection's

    reader = Collection(Settings(data_dir=tmp_path / "reader", db_url=url, model="fake-colour"))
    enc, seen = ColourEncoder(), []
    gate.touch()
    while writer.poll() is None:  # a reader meanwhile: whole batches, only the first folder
        hits = search(reader, enc, build_terms("red"), k=100).hits
        assert all(Path(h.path).parent == first for h in hits)
        assert len({h.id for h in hits}) == len(hits)
        seen.append(len(hits))
        time.sleep(0.1)
    assert writer.returncode == 0, stop(writer)
    assert seen == sorted(seen)

    again = clipfind("index", str(second), "--data-dir", str(data_b), *args)
    err = finish(again)
    assert again.returncode == 0, err
    paths = _paths(reader)
    assert len(paths) == len(set(paths)) == 2 * N
    assert {Path(p).parent for p in paths} == {first, second}
    assert len(search(reader, enc, build_terms("red"), k=100).hits) == 2 * N
    reader.close()
