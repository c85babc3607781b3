"""Several writers on one PostgreSQL collection at the same time, as real ``clipfind``
processes (clipfind/store/locks.py, pg_locks.py). Index runs on disjoint folders both
complete, on one machine (one collection folder) and on two (each its own folder, one
catalog): every picture once, the saved FAISS index at the catalog's generation with
exactly its vectors, a search in a fresh process finds both folders. The same folder, or
one inside the other, is refused at once (exit 7) naming the holder. A run killed with
-9 costs the other nothing and runs again. Texts are indexed while items are; a label run
is refused while an index run writes (labels point at items the run may remove).

Each process costs an interpreter start (seconds on a busy machine), so the processes of
one step start together."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from clipfind.config import Settings
from clipfind.search import build_terms, search
from clipfind.search.zeroshot.labeling import label_collection
from clipfind.store.collection import Collection
from clipfind.store.locks import holders
from clipfind.store.vectors import VectorIndex
from tests.fakes import ColourEncoder
from tests.pg_procs import clipfind, fill, stop

N = 24  # pictures a folder: 6 batches of 4, DELAY s each, so two runs overlap for seconds
DELAY = 0.3


def _coll_dir(data: Path) -> Path:
    return data / "collections" / "default"


def _wait_until_held(procs, folders) -> None:  # type: ignore[no-untyped-def]
    """Until every process holds its claim (it got past the writer locks), or fail."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        held = {pid for folder in set(folders) for pid in holders(folder)}
        if all(p.pid in held for p in procs):
            return
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    raise AssertionError("a run did not start: " + " | ".join(stop(p)[-1500:] for p in procs))


def _done(proc) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """Wait for a process to exit by itself: its exit status, stdout and stderr."""
    try:
        out, err = proc.communicate(timeout=180)
    except BaseException:
        proc.kill()
        raise
    return proc.returncode, out, err


def _rows(url: str) -> list[tuple[int, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(text("SELECT id, path FROM items ORDER BY path"))]
    finally:
        engine.dispose()


def _wait_for_rows(url: str, root: Path, proc) -> None:  # type: ignore[no-untyped-def]
    """Until a batch of pictures under ``root`` is committed."""
    deadline = time.monotonic() + 120
    while not any(Path(p).parent == root for _, p in _rows(url)):
        assert proc.poll() is None and time.monotonic() < deadline, stop(proc)[-2000:]
        time.sleep(0.05)


def _ids(index: VectorIndex) -> set[int]:
    return {int(index.index.id_map.at(i)) for i in range(len(index))}


def _check_whole(url: str, data: Path, folders: list[Path]) -> None:
    """Every picture of ``folders`` once; the saved index file in ``data``, when it claims
    the catalog's generation, holds exactly the catalog's vectors, and when it is behind, a
    collection opened afresh rebuilds it (and saves it); a search finds every picture."""
    rows = _rows(url)
    paths = [p for _, p in rows]
    assert len(paths) == len(set(paths)) == N * len(folders)
    assert {Path(p).parent for p in paths} == set(folders)
    coll = Collection(Settings(data_dir=data, db_url=url, model="fake-colour"))
    try:
        assert coll.catalog.count() == len(rows)
        generation = coll.catalog.generation
        saved = VectorIndex.load(coll.settings.index_path)
        assert saved is not None and saved.generation <= generation
        if saved.generation == generation:  # taken as it is: it must be whole
            assert (len(saved), _ids(saved)) == (len(rows), {i for i, _ in rows})
        index = coll.vector_index()
        assert index.generation == generation
        assert (len(index), _ids(index)) == (len(rows), {i for i, _ in rows})
        assert VectorIndex.load(coll.settings.index_path).generation == generation  # type: ignore[union-attr]
        hits = search(coll, ColourEncoder(), build_terms("red"), k=3 * N).hits
        assert sorted(h.path for h in hits) == sorted(paths)
    finally:
        coll.close()


@pytest.mark.parametrize("shared_folder", [True, False], ids=["one-machine", "two-machines"])
def test_index_runs_on_two_folders_both_complete(tmp_path, postgres_server, shared_folder):  # type: ignore[no-untyped-def]
    url = postgres_server.new_database()
    first, second = tmp_path / "first", tmp_path / "second"
    fill(first, N)
    fill(second, N, start=N)
    data_a = tmp_path / "data-a"
    data_b = data_a if shared_folder else tmp_path / "data-b"
    gate = tmp_path / "go"  # neither encodes before both are past the writer locks
    args = ("--db-url", url, "--model", "fake-colour", "--json")
    runs = [
        clipfind("index", str(root), "--data-dir", str(data), *args, delay=DELAY, gate=gate)
        for root, data in ((first, data_a), (second, data_b))
    ]
    _wait_until_held(runs, [_coll_dir(data_a), _coll_dir(data_b)])  # both hold: they overlap
    gate.touch()
    for run in runs:
        code, out, err = _done(run)
        assert code == 0, err
        assert (json.loads(out)["added"], json.loads(out)["skipped"]) == (N, 0)
    search_run = clipfind(  # a fresh process, before anything else opened the collection
        "search", "red", "-k", str(3 * N), "--json", "--data-dir", str(data_b), "--db-url", url
    )
    code, out, err = _done(search_run)
    assert code == 0, err
    assert {Path(h["path"]).parent for h in json.loads(out)["results"]} == {first, second}
    assert len(json.loads(out)["results"]) == 2 * N
    for data in {data_a, data_b}:
        _check_whole(url, data, [first, second])


def test_the_same_folder_or_one_inside_it_is_refused(tmp_path, postgres_server):  # type: ignore[no-untyped-def]
    url = postgres_server.new_database()
    root = tmp_path / "photos"
    fill(root / "sub", N)
    data = tmp_path / "data"
    gate = tmp_path / "go"
    base = ("--db-url", url, "--model", "fake-colour")
    writer = clipfind("index", str(root), "--data-dir", str(data), *base, delay=0.1, gate=gate)
    _wait_until_held([writer], [_coll_dir(data)])
    # the same folder through the same collection folder (the claim file refuses it), a
    # folder inside it from another machine's folder (PostgreSQL's locks refuse it)
    tries = [
        clipfind("index", str(target), "--data-dir", str(where), *base)
        for target, where in ((root, data), (root / "sub", tmp_path / "other-machine"))
    ]
    for proc in tries:
        code, _, err = _done(proc)
        assert code == 7, err
        assert f"another index run is in progress (pid {writer.pid}" in err and "Traceback" not in err
    gate.touch()
    code, _, err = _done(writer)
    assert code == 0, err
    rows = _rows(url)
    assert len(rows) == len({p for _, p in rows}) == N


def test_a_run_killed_mid_way_costs_the_other_nothing(tmp_path, postgres_server):  # type: ignore[no-untyped-def]
    url = postgres_server.new_database()
    survivor_root, victim_root = tmp_path / "keep", tmp_path / "killed"
    fill(survivor_root, N)
    fill(victim_root, N, start=N)
    data = tmp_path / "data"
    args = ("--data-dir", str(data), "--db-url", url, "--model", "fake-colour", "--json")
    gate, hold = tmp_path / "go", tmp_path / "hold"
    hold.touch()  # the survivor pauses after its first batch until the other is dead
    survivor = clipfind("index", str(survivor_root), *args, delay=DELAY, gate=gate, hold=hold)
    victim = clipfind("index", str(victim_root), *args, delay=DELAY, gate=gate)
    _wait_until_held([survivor, victim], [_coll_dir(data)])
    gate.touch()
    _wait_for_rows(url, victim_root, victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    _wait_for_rows(url, survivor_root, survivor)
    assert survivor.poll() is None  # half-way when the other died
    hold.unlink()
    code, _, err = _done(survivor)
    assert code == 0, err

    code, out, err = _done(clipfind("index", str(victim_root), *args))  # the dead claim is no obstacle
    assert code == 0, err
    assert 0 < json.loads(out)["added"] < N  # it resumed after the batches the killed run committed
    assert victim.pid not in holders(_coll_dir(data))  # its claim file was cleared
    _check_whole(url, data, [survivor_root, victim_root])


def test_texts_are_indexed_during_an_index_run_and_a_label_run_is_refused(tmp_path, postgres_server):  # type: ignore[no-untyped-def]
    url = postgres_server.new_database()
    root = tmp_path / "photos"
    fill(root, N)
    data = tmp_path / "data"
    args = ("--data-dir", str(data), "--db-url", url, "--model", "fake-colour")
    gate, hold = tmp_path / "go", tmp_path / "hold"
    hold.touch()  # the index run pauses half-way (a batch committed) until the end
    writer = clipfind("index", str(root), *args, delay=DELAY, gate=gate, hold=hold)
    _wait_until_held([writer], [_coll_dir(data)])
    texts = tmp_path / "texts.txt"
    texts.write_text("a red square\na green square\na blue square\n")
    gate.touch()
    _wait_for_rows(url, root, writer)
    adding = clipfind("index-texts", str(texts), *args, "--json")
    labelling = clipfind("label", "--labels", "red,green,blue", "--name", "colours", *args)
    code, out, err = _done(adding)
    assert code == 0, err
    assert json.loads(out)["added"] == 3
    code, _, err = _done(labelling)
    assert code == 7, err
    assert f"another index run is in progress (pid {writer.pid})" in err and "Traceback" not in err
    assert writer.poll() is None  # all of it happened while the index run was half-way
    hold.unlink()
    code, _, err = _done(writer)
    assert code == 0, err

    _check_whole(url, data, [root])
    reader = Collection(Settings(data_dir=data, db_url=url, model="fake-colour"))
    try:
        assert reader.catalog.texts.count() == 3
        labelled = label_collection(reader, ColourEncoder(), ["red", "green", "blue"], name="colours")
        assert labelled.scored == N  # once the index run is done, labels go on
    finally:
        reader.close()
