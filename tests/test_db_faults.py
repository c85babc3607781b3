"""One writer per collection, and database faults as one line: a second index run (CLI
or a server's job) is refused with the holder's pid; damaged catalog pages and a full
disk are a sentence naming the file and the remedy (exit 7, HTTP 503), and nothing
further is written; a search that cannot save the index it rebuilt still answers."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipfind.api.cli import main
from tests.fakes import ColourEncoder, solid
from tests.test_api_support import app_settings, running_app, wait_job

REPO = Path(__file__).resolve().parents[1]

_SLOW_INDEXER = """
import sys, time
import clipfind.api.cli.common as common
from tests.fakes import ColourEncoder

class Slow(ColourEncoder):
    def encode_pixels(self, pixels):
        time.sleep(0.3)
        return super().encode_pixels(pixels)

common.make_encoder = lambda settings, coll: Slow()
from clipfind.api.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys):  # type: ignore[no-untyped-def]
    import clipfind.api.cli.common as common

    encoder = ColourEncoder()
    monkeypatch.setattr(common, "make_encoder", lambda settings, coll: encoder)
    data = tmp_path / "data"

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--data-dir", str(data)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    run.data = data  # type: ignore[attr-defined]
    run.folder = data / "collections" / "default"  # type: ignore[attr-defined]
    return run


def _fill(root: Path, n: int) -> None:
    for i in range(n):
        solid(root / f"img{i:03d}.png", (i * 7 % 256, 255 - i * 5 % 256, 60))


def _start_slow_index(root: Path, data: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_INDEXER, "index", str(root), "--data-dir", str(data),
         "--batch-size", "2", "--workers", "1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    from clipfind.store.locks import holders

    folder = data / "collections" / "default"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if proc.pid in holders(folder):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the indexer did not take the lock: {proc.communicate()}")


# -- 5. one writer at a time --------------------------------------------------------------
def test_a_second_index_run_is_refused_with_the_holders_pid(tmp_path, cli):
    _fill(tmp_path / "p", 30)
    proc = _start_slow_index(tmp_path / "p", cli.data)
    try:
        code, _, err = cli("index", str(tmp_path / "p"))
        assert code == 7 and "Traceback" not in err
        assert f"another index run is in progress (pid {proc.pid})" in err
        code, _, err = cli("forget", str(tmp_path / "p"))  # forget writes too
        assert code == 7 and f"(pid {proc.pid})" in err
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    code, _, err = cli("index", str(tmp_path / "p"), "--json")  # the lock went with it
    assert code == 0, err
    with sqlite3.connect(cli.folder / "catalog.db") as con:
        assert con.execute("select count(*) from items").fetchone()[0] == 30


def test_a_servers_index_job_and_the_cli_exclude_each_other(tmp_path):
    _fill(tmp_path / "photos", 30)
    settings = app_settings(tmp_path)
    with running_app(settings, index=False) as client:
        proc = _start_slow_index(tmp_path / "photos", settings.data_dir)
        try:
            job = wait_job(client, client.post("/index", json={}).json()["id"])
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
        assert job["status"] == "failed"
        assert f"another index run is in progress (pid {proc.pid})" in job["error"]
        job = wait_job(client, client.post("/index", json={}).json()["id"])
        assert job["status"] == "done", job


def test_the_lock_holds_on_postgresql_across_collection_folders(tmp_path, request):
    from tests.pg import find_bindir

    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries are not installed")
    pytest.importorskip("psycopg")
    from clipfind.config import Settings
    from clipfind.errors import CollectionBusyError
    from clipfind.store.collection import Collection

    url = request.getfixturevalue("postgres_server").new_database()
    # two machines: one catalog, each its own data dir (so the lock files differ)
    first = Collection(Settings(data_dir=tmp_path / "a", db_url=url))
    second = Collection(Settings(data_dir=tmp_path / "b", db_url=url))
    busy = pytest.raises(CollectionBusyError, match="another index run is in progress")
    with first.writing(), busy, second.writing():
        pass
    with second.writing():
        pass


# -- 10. database faults ---------------------------------------------------------------
def _corrupt_pages(db: Path) -> None:
    for side in ("catalog.db-wal", "catalog.db-shm"):
        (db.parent / side).unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    for start in range(page, len(data), page):  # every page but the header's
        data[start:start + page] = os.urandom(page)
    db.write_bytes(bytes(data))


def test_damaged_catalog_pages_are_one_line_and_exit_7(tmp_path, cli):
    import gc

    _fill(tmp_path / "p", 40)
    assert cli("index", str(tmp_path / "p"))[0] == 0
    gc.collect()  # the run's connections close, as at a process exit
    db = cli.folder / "catalog.db"
    _corrupt_pages(db)
    damaged, index = db.read_bytes(), (cli.folder / "index.faiss").read_bytes()
    for argv in (("search", "red"), ("index", str(tmp_path / "p")), ("info",)):
        code, _, err = cli(*argv)
        assert code == 7, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert f"The catalog {db} is damaged" in err and "backup" in err
        assert db.read_bytes() == damaged and (cli.folder / "index.faiss").read_bytes() == index


def test_a_full_disk_under_the_catalog_stops_the_run_with_one_line(tmp_path, cli, monkeypatch):
    from sqlalchemy import event

    import clipfind.store.catalog as catalog_mod

    _fill(tmp_path / "p", 6)
    assert cli("index", str(tmp_path / "p"))[0] == 0
    _fill(tmp_path / "p" / "more", 30)
    real = catalog_mod._make_engine

    def full_engine(url: str):  # type: ignore[no-untyped-def]
        engine = real(url)

        @event.listens_for(engine, "connect")
        def _no_room(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL beyond

        return engine

    monkeypatch.setattr(catalog_mod, "_make_engine", full_engine)
    code, _, err = cli("index", str(tmp_path / "p"))
    assert code == 7 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"No space left for the catalog {cli.folder / 'catalog.db'}" in err
    assert "Free disk space" in err
    monkeypatch.setattr(catalog_mod, "_make_engine", real)
    code, out, err = cli("index", str(tmp_path / "p"), "--json")  # room again: it resumes
    assert code == 0 and json.loads(out)["added"] + 6 == 36


def test_a_search_that_cannot_save_the_rebuilt_index_still_answers(tmp_path, cli, monkeypatch,
                                                                  caplog):
    import faiss

    _fill(tmp_path / "p", 5)
    assert cli("index", str(tmp_path / "p"))[0] == 0
    (cli.folder / "index.faiss").unlink()  # the next search rebuilds it

    def no_room(index, name):  # type: ignore[no-untyped-def]
        Path(name).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)

    monkeypatch.setattr(faiss, "write_index", no_room)
    code, out, err = cli("search", "red", "--json")
    assert code == 0 and len(json.loads(out)["results"]) == 5 and "Traceback" not in err
    assert "No space left on device" in caplog.text
    assert not [p.name for p in cli.folder.iterdir() if ".tmp" in p.name]  # no half file
    assert not (cli.folder / "index.faiss").exists()


def test_a_damaged_catalog_is_a_storage_error_for_the_server_too(tmp_path, cli):
    """The server opens collections through the same store: its handlers answer a
    :class:`StorageError` with its ``http_status``, 503 (api/http/errors.py)."""
    import gc

    from clipfind.config import Settings
    from clipfind.errors import StorageError
    from clipfind.store.collection import Collection

    _fill(tmp_path / "p", 40)
    assert cli("index", str(tmp_path / "p"))[0] == 0
    gc.collect()
    _corrupt_pages(cli.folder / "catalog.db")
    with pytest.raises(StorageError, match="is damaged") as caught:
        Collection(Settings(data_dir=cli.data)).catalog.count()
    assert caught.value.http_status == 503 and caught.value.exit_code == 7


def test_a_lock_file_that_cannot_be_made_is_a_storage_error(tmp_path):
    from clipfind.errors import StorageError
    from clipfind.store.locks import file_lock
    from tests.test_data_safety import _read_only

    folder = tmp_path / "coll"
    folder.mkdir()
    _read_only(folder, True)
    try:
        with pytest.raises(StorageError, match=f"Make {folder} writable"), file_lock(folder, "c"):
            pass
    finally:
        _read_only(folder, False)


def test_a_server_answers_damaged_catalog_pages_with_503(tmp_path):
    import gc

    from clipfind.indexer import index_paths
    from clipfind.store.collection import Collection

    _fill(tmp_path / "photos", 120)
    settings = app_settings(tmp_path)
    coll = Collection(settings)
    index_paths(coll, ColourEncoder(), [tmp_path / "photos"])
    coll.close()
    del coll
    gc.collect()
    db = settings.collection_dir / "catalog.db"
    with sqlite3.connect(db) as con:  # the pages of the items table and its indexes only
        pages = [p for (p,) in con.execute(
            "select pageno from dbstat where name = 'items' or name like '%items%'")]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = bytearray(db.read_bytes())
    for page in pages:
        data[(page - 1) * size:page * size] = os.urandom(size)
    db.write_bytes(bytes(data))
    with running_app(settings, index=False) as client:  # starts: meta and index are whole
        response = client.get("/search", params={"q": "red"})
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert f"The catalog {db} is damaged" in detail and "Traceback" not in response.text
