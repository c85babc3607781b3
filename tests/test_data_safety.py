"""Nothing lost: reuse by hash takes the vector the hash had, a skip is never permanent,
an unmounted drive or a mass deletion removes nothing without an explicit option, and an
empty or unreadable catalog beside an index is an error that changes nothing. Through
the real CLI on real SQLite and FAISS files, with the colour encoder."""

from __future__ import annotations

import gc
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clipfind.api.cli import main
from tests.fakes import ColourEncoder, solid


@pytest.fixture
def cli(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """``cli(*argv)`` → (exit code, stdout, stderr) with the colour encoder and a data dir
    in ``tmp_path``."""
    import clipfind.api.cli.common as common

    encoder = ColourEncoder()
    monkeypatch.setattr(common, "make_encoder", lambda settings, coll: encoder)
    data = tmp_path / "data"

    def run(*argv: str) -> tuple[int, str, str]:
        capsys = run.capsys  # type: ignore[attr-defined]
        code = main([*argv, "--data-dir", str(data)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    run.encoder = encoder  # type: ignore[attr-defined]
    run.db = data / "collections" / "default" / "catalog.db"  # type: ignore[attr-defined]
    run.index = data / "collections" / "default" / "index.faiss"  # type: ignore[attr-defined]
    return run


@pytest.fixture(autouse=True)
def _capsys(cli, capsys):  # type: ignore[no-untyped-def]
    cli.capsys = capsys


def _rows(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as con:
        return {p: (i, s, v, w) for i, p, s, v, w in
                con.execute("select id, path, status, vector, width from items")}


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, np.float32)


# -- 1. reuse by hash ------------------------------------------------------------------
def test_copy_keeps_the_vector_its_content_had_when_the_original_changes(tmp_path, cli):
    a = solid(tmp_path / "p" / "a.jpg", "red", size=(40, 30))
    assert cli("index", str(tmp_path / "p"))[0] == 0
    red = _rows(cli.db)[str(a)]
    shutil.copyfile(a, tmp_path / "p" / "b.jpg")
    solid(a, "blue", size=(50, 20))  # a.jpg becomes another photo in the same run
    assert cli("index", str(tmp_path / "p"))[0] == 0
    rows = _rows(cli.db)
    b = rows[str(tmp_path / "p" / "b.jpg")]
    assert b[1] == "ok" and b[2] == red[2] and b[3] == 40  # the red vector, red's width
    assert rows[str(a)][3] == 50 and not np.allclose(_vec(rows[str(a)][2]), _vec(red[2]))
    code, out, _ = cli("search", "red", "-k", "1", "--json")
    assert code == 0 and json.loads(out)["results"][0]["path"].endswith("b.jpg")


def test_copy_of_a_file_that_turns_corrupt_is_indexed_not_skipped(tmp_path, cli):
    c = solid(tmp_path / "p" / "c.jpg", "green")
    assert cli("index", str(tmp_path / "p"))[0] == 0
    green = _rows(cli.db)[str(c)][2]
    shutil.copyfile(c, tmp_path / "p" / "d.jpg")
    c.write_bytes(b"\xff\xd8\xff garbage, no longer a picture" * 20)
    code, out, _ = cli("index", str(tmp_path / "p"), "--json")
    assert code == 0 and json.loads(out)["added"] == 1
    rows = _rows(cli.db)
    assert rows[str(tmp_path / "p" / "d.jpg")][1:3] == ("ok", green)
    assert rows[str(c)][1] == "skipped"


def test_a_skip_for_a_passing_reason_is_retried_by_the_next_run(tmp_path, cli):
    from clipfind.config import Settings
    from clipfind.indexer.prepare import DUPLICATE, Prepared
    from clipfind.indexer.walk import FileEntry
    from clipfind.indexer.writer import write_batch
    from clipfind.store.collection import Collection

    e = solid(tmp_path / "p" / "e.jpg", "cyan")
    st = e.stat()
    coll = Collection(Settings(data_dir=tmp_path / "data"))
    # a duplicate whose donor is nowhere (the case the writer calls "vector source
    # disappeared"): skipped in this run, but never recorded as an unchanged file
    write_batch(coll.catalog, [Prepared(FileEntry(str(e), st.st_size, st.st_mtime_ns),
                                        DUPLICATE, content_hash="0" * 64)], None)
    coll.close()
    assert _rows(cli.db)[str(e)][1] == "skipped"
    code, out, _ = cli("index", str(tmp_path / "p"), "--json")
    assert code == 0 and json.loads(out)["updated"] == 1
    assert _rows(cli.db)[str(e)][1] == "ok"


# -- 2. unmounted drives and mass removals ---------------------------------------------
def _fill(root: Path, n: int) -> list[Path]:
    return [solid(root / f"img{i:02d}.png", (i * 9 % 256, 200 - i * 7, 90)) for i in range(n)]


def test_an_emptied_root_removes_nothing_without_allow_removals(tmp_path, cli):
    files = _fill(tmp_path / "mnt" / "photos", 12)
    root = str(tmp_path / "mnt" / "photos")
    assert cli("index", root)[0] == 0
    before = _rows(cli.db)
    for f in files:  # the drive is unmounted: its mount point stays as an empty folder
        f.unlink()
    code, out, err = cli("index", root)
    assert code == 7 and "Traceback" not in err
    assert "12 items" in err and "no files" in err and "--allow-removals" in err
    assert _rows(cli.db) == before
    code, out, err = cli("index", root, "--allow-removals", "--json")
    assert code == 0 and json.loads(out)["removed"] == 12 and _rows(cli.db) == {}


def test_an_emptied_mount_point_inside_a_root_removes_nothing(tmp_path, cli):
    _fill(tmp_path / "mnt" / "local", 20)
    drive = _fill(tmp_path / "mnt" / "photos", 12)  # 12 of 32: not most of the root
    assert cli("index", str(tmp_path / "mnt"))[0] == 0
    before = _rows(cli.db)
    for f in drive:
        f.unlink()
    code, _, err = cli("index", str(tmp_path / "mnt"))
    assert code == 7 and f"{tmp_path / 'mnt' / 'photos'} held 12 items" in err
    assert _rows(cli.db) == before
    shutil.rmtree(tmp_path / "mnt" / "photos")  # a folder deleted for good is gone, not empty
    code, out, _ = cli("index", str(tmp_path / "mnt"), "--json")
    assert code == 0 and json.loads(out)["removed"] == 12


def test_a_root_on_another_device_removes_nothing(tmp_path, cli):
    files = _fill(tmp_path / "photos", 4)
    assert cli("index", str(tmp_path / "photos"))[0] == 0
    with sqlite3.connect(cli.db) as con:  # as if another filesystem were mounted there
        (raw,) = con.execute("select value from meta where key = 'root_devices'").fetchone()
        devices = {k: v + 1 for k, v in json.loads(raw).items()}
        con.execute("update meta set value = ? where key = 'root_devices'", [json.dumps(devices)])
    files[0].unlink()
    code, _, err = cli("index", str(tmp_path / "photos"))
    assert code == 7 and "another device" in err and len(_rows(cli.db)) == 4
    code, out, _ = cli("index", str(tmp_path / "photos"), "--allow-removals", "--json")
    assert code == 0 and json.loads(out)["removed"] == 1


def test_removing_most_of_a_root_needs_the_flag_off_a_terminal(tmp_path, cli):
    files = _fill(tmp_path / "p", 30)
    assert cli("index", str(tmp_path / "p"))[0] == 0
    for f in files[:20]:
        f.unlink()
    solid(tmp_path / "p" / "new.png", "white")
    code, _, err = cli("index", str(tmp_path / "p"))
    assert code == 7 and "20 of 30" in err and "--allow-removals" in err
    rows = _rows(cli.db)
    assert len(rows) == 31 and rows[str(tmp_path / "p" / "new.png")][1] == "ok"  # the rest ran
    code, out, _ = cli("index", str(tmp_path / "p"), "--allow-removals", "--json")
    assert code == 0 and json.loads(out)["removed"] == 20 and len(_rows(cli.db)) == 11
    files[20].unlink()  # a few at a time need nothing
    code, out, _ = cli("index", str(tmp_path / "p"), "--json")
    assert code == 0 and json.loads(out)["removed"] == 1


def test_a_terminal_asks_before_removing_most_of_a_root(tmp_path, fake_settings, fake_encoder):
    from clipfind.errors import CollectionError
    from clipfind.indexer import index_paths
    from clipfind.store.collection import Collection

    files = _fill(tmp_path / "p", 20)
    coll = Collection(fake_settings)
    index_paths(coll, fake_encoder, [tmp_path / "p"])
    for f in files[:15]:
        f.unlink()
    asked: list[str] = []
    with pytest.raises(CollectionError, match="15 of 20"):
        index_paths(coll, fake_encoder, [tmp_path / "p"],
                    confirm=lambda text: asked.append(text) is not None)  # answers no
    assert len(asked) == 1 and "15 of 20" in asked[0] and coll.catalog.count() == 20
    summary = index_paths(coll, fake_encoder, [tmp_path / "p"], confirm=lambda text: True)
    assert summary.removed == 15 and coll.catalog.count() == 5


def test_a_servers_index_job_keeps_the_items_of_an_emptied_root(tmp_path):
    from tests.test_api_support import app_settings, running_app, wait_job

    files = _fill(tmp_path / "photos", 5)
    with running_app(app_settings(tmp_path)) as client:  # indexes the root first
        labelled = client.post("/labels/kinds", json={"labels": ["green", "magenta"]})
        assert labelled.status_code == 200, labelled.text
        before = client.get("/labels/kinds").json()
        assert before["labelled_items"] == 5
        for f in files:
            f.unlink()
        job = wait_job(client, client.post("/index", json={}).json()["id"])
        assert job["status"] == "failed" and "no files" in job["error"]
        assert "allow_removals" in job["error"]
        assert client.get("/info").json()["indexed"] == 5
        after = client.get("/labels/kinds").json()
        assert after == before  # the labels survive with their items
        job = wait_job(client, client.post("/index", json={"allow_removals": True}).json()["id"])
        assert job["status"] == "done" and job["summary"]["removed"] == 5


# -- 3. an empty or unreadable catalog beside an index ---------------------------------
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_an_empty_or_unreadable_catalog_is_an_error_that_changes_nothing(tmp_path, cli, damage):
    _fill(tmp_path / "p", 5)
    assert cli("index", str(tmp_path / "p"))[0] == 0
    gc.collect()  # the earlier runs' connections close (and checkpoint), as at a process exit
    index_bytes = cli.index.read_bytes()
    for side in ("catalog.db-wal", "catalog.db-shm"):  # as a clean exit leaves it
        (cli.db.parent / side).unlink(missing_ok=True)
    if damage == "truncate":
        cli.db.write_bytes(b"")
    else:
        cli.db.write_bytes(b"this is not a database at all" * 300)
    catalog_bytes = cli.db.read_bytes()
    for argv in (("search", "red"), ("index", str(tmp_path / "p")), ("info",)):
        code, out, err = cli(*argv)
        assert code == 7, (argv, out, err)
        assert str(cli.db) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert "--db-url" not in err
        assert cli.index.read_bytes() == index_bytes and cli.db.read_bytes() == catalog_bytes


# -- 13. smaller points ------------------------------------------------------------------
def test_a_name_that_is_not_utf8_is_listed_by_info(tmp_path, cli):
    solid(tmp_path / "p" / "ok.jpg", "red")
    shutil.copyfile(tmp_path / "p" / "ok.jpg", os.fsencode(tmp_path / "p") + b"/caf\xe9.jpg")
    assert cli("index", str(tmp_path / "p"))[0] == 0
    code, out, _ = cli("info", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["skipped"] == 1
    assert [f["path"] for f in doc["skipped_files"]] == [str(tmp_path / "p") + "/caf\ufffd.jpg"]
    assert "not valid UTF-8" in doc["skipped_files"][0]["reason"]
    os.remove(os.fsencode(tmp_path / "p") + b"/caf\xe9.jpg")  # renamed or gone: off the list
    assert cli("index", str(tmp_path / "p"))[0] == 0
    assert json.loads(cli("info", "--json")[1])["skipped_files"] == []


def test_an_index_file_replaced_by_a_folder_is_no_traceback(tmp_path, cli, caplog):
    _fill(tmp_path / "p", 3)
    assert cli("index", str(tmp_path / "p"))[0] == 0
    cli.index.unlink()
    cli.index.mkdir()
    code, out, err = cli("search", "red", "--json")
    assert code == 0 and len(json.loads(out)["results"]) == 3
    assert "Traceback" not in err and f"cannot save the index to {cli.index}" in caplog.text
    code, out, err = cli("index", str(tmp_path / "p"))
    assert code == 0 and "Traceback" not in err


def _read_only(folder: Path, on: bool) -> None:
    """A folder nobody may write: ``chmod`` for a user, ``chattr +i`` for root (whom
    permissions do not stop)."""
    if os.geteuid() != 0:
        folder.chmod(0o555 if on else 0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    done = subprocess.run(["chattr", "+i" if on else "-i", str(folder)], capture_output=True)
    if done.returncode and on:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")


@pytest.mark.parametrize("which", ["collection", "data"])
def test_a_read_only_data_dir_is_named_not_the_db_url(tmp_path, cli, which):
    _fill(tmp_path / "p", 2)
    if which == "collection":  # an existing collection in a folder that became read-only
        assert cli("index", str(tmp_path / "p"))[0] == 0
        gc.collect()
        folder = cli.db.parent
        for side in ("catalog.db-wal", "catalog.db-shm"):
            (folder / side).unlink(missing_ok=True)
    else:  # a new collection under a read-only data dir
        folder = cli.db.parent.parent.parent
        folder.mkdir(parents=True)
    _read_only(folder, True)
    try:
        code, _, err = cli("index", str(tmp_path / "p"))
    finally:
        _read_only(folder, False)
    assert code == 7 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--db-url" not in err and f"{folder} " in err and "--data-dir" in err
