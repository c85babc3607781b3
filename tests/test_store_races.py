"""Races the store settles, on SQLite and PostgreSQL with real concurrency (two threads,
each with its own Collection, so its own engine and connections, on one catalog):

- two models bind a fresh collection at once: exactly one wins, the other gets the
  one-line ModelMismatchError; the same model twice at once binds once, both succeed;
- ``labels delete`` during a ``label`` run of that set: while the run scores, the run
  stops before its next chunk with a one-line error and stores nothing; while the run's transaction stores the
  set, the delete waits for it and deletes all of it. Never a half set, never a row of
  a deleted set. The interleavings are forced by hooks (a barrier in the probe encoder,
  the progress callback, the label-row inserts), not by sleeping."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from sqlalchemy import func, select, text

import clipfind.store.labels as label_store
from clipfind.config import Settings
from clipfind.errors import CollectionError, ModelMismatchError, NotFoundError
from clipfind.indexer import index_paths
from clipfind.search.zeroshot.labeling import delete_label_set, label_collection, list_label_sets
from clipfind.store.collection import Collection
from clipfind.store.schema import ItemLabel
from tests.fakes import ColourEncoder, solid
from tests.pg import db_url
from tests.pg_procs import REPO, fill

ROUNDS = 3  # fresh catalogs a bind race runs on: each round races once more

# Two real `clipfind index` processes: the colour encoder, its texts (and pictures) in a
# flipped space where RACE_FLIP=1; the model probe waits until RACE_DIR/go exists, after
# marking RACE_DIR/ready-PID, so the test starts both binds together; a picture encoded
# marks RACE_DIR/encoded-PID.
CHILD = """
import os, sys, time
from pathlib import Path
import numpy as np
import clipfind.api.cli.common as common
from tests.fakes import ColourEncoder

RACE = Path(os.environ["RACE_DIR"])
FLIP = os.environ.get("RACE_FLIP") == "1"

class Racing(ColourEncoder):
    spec = "fake-colour-flipped" if FLIP else "fake-colour"

    def encode_texts(self, texts):
        out = super().encode_texts(texts)
        (RACE / f"ready-{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while not (RACE / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return np.ascontiguousarray(out[:, ::-1]) if FLIP else out

    def encode_pixels(self, pixels):
        (RACE / f"encoded-{os.getpid()}").touch()
        out = super().encode_pixels(pixels)
        return np.ascontiguousarray(out[:, ::-1]) if FLIP else out

common.make_encoder = lambda settings, coll: Racing()
from clipfind.api.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Gated(ColourEncoder):
    """The colour encoder whose text encoding (the model probe) waits at ``barrier``, so
    two binds reach the catalog together; ``flip`` embeds texts into another space."""

    def __init__(self, barrier: threading.Barrier, flip: bool) -> None:
        super().__init__()
        self.barrier, self.flip = barrier, flip
        self.spec = "fake-colour-flipped" if flip else "fake-colour"

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        out = super().encode_texts(texts)
        self.barrier.wait(timeout=60)
        return np.ascontiguousarray(out[:, ::-1]) if self.flip else out


def _in_threads(*calls):  # type: ignore[no-untyped-def]
    """Run each call in its own thread; the exception each raised (None: none)."""
    errors: list[BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            calls[i]()
        except BaseException as exc:  # reported to the test
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a racing call hung"
    return errors


@pytest.mark.parametrize("same", [False, True], ids=["two-models", "same-model"])
def test_binding_a_fresh_collection_at_once(request, tmp_path, fake_settings, backend, same):  # type: ignore[no-untyped-def]
    for round_ in range(ROUNDS):
        settings = fake_settings.model_copy(
            update={"data_dir": tmp_path / f"r{round_}", "db_url": db_url(request, backend)}
        )
        first, second = Collection(settings), Collection(settings)
        try:
            barrier = threading.Barrier(2)
            encoders = [Gated(barrier, flip=False), Gated(barrier, flip=not same)]
            errors = _in_threads(
                lambda a=first, e=encoders[0]: a.bind_model(e),
                lambda b=second, e=encoders[1]: b.bind_model(e),
            )
            if same:
                assert errors == [None, None]
                assert first.stored_model == "fake-colour"
                continue
            failed = [e for e in errors if e is not None]
            assert len(failed) == 1 and isinstance(failed[0], ModelMismatchError), errors
            assert "\n" not in str(failed[0]) and ModelMismatchError.exit_code == 4
            winner = encoders[errors.index(None)]
            loser = encoders[1 - errors.index(None)]
            # one space recorded: the winner's name, width and probe, as both now read it
            assert first.stored_model == second.stored_model == winner.spec
            assert winner.spec in str(failed[0]) and loser.spec in str(failed[0])
            loser.barrier = winner.barrier = threading.Barrier(1)
            second.bind_model(winner)  # the winner binds again; the loser is refused again
            with pytest.raises(ModelMismatchError):
                first.bind_model(loser)
        finally:
            first.close()
            second.close()


def test_two_index_processes_with_two_models_on_a_fresh_postgresql_collection(postgres_server, tmp_path):  # type: ignore[no-untyped-def]
    """On PostgreSQL, index runs on disjoint folders run together (on SQLite the writer
    claim already refuses the second run): the model bind is what keeps one space."""
    url, race = postgres_server.new_database(), tmp_path / "race"
    race.mkdir()
    procs = []
    for flip in ("0", "1"):
        fill(tmp_path / f"photos{flip}", 4)
        env = {**os.environ, "PYTHONPATH": str(REPO), "RACE_DIR": str(race), "RACE_FLIP": flip}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    "index",
                    str(tmp_path / f"photos{flip}"),
                    "--data-dir",
                    str(tmp_path / "data"),
                    "--db-url",
                    url,
                ],
                cwd=REPO,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    try:
        deadline = time.monotonic() + 120  # both probes computed, neither bound yet
        while len(list(race.glob("ready-*"))) < 2 and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.02)
        (race / "go").touch()
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            p.kill()
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 4], results
    winner, loser = (procs[i] for i in sorted((0, 1), key=lambda i: results[i][0]))
    message = results[procs.index(loser)][2].strip()
    assert len(message.splitlines()) == 1 and "embeds into another space" in message, message
    assert (race / f"encoded-{winner.pid}").exists()
    assert not (race / f"encoded-{loser.pid}").exists()  # refused before encoding anything
    settings = Settings(data_dir=tmp_path / "data", db_url=url)
    coll = Collection(settings)
    try:
        assert coll.catalog.count() == 4  # the winner's pictures only
        assert coll.stored_model == ("fake-colour-flipped" if winner is procs[1] else "fake-colour")
    finally:
        coll.close()


@pytest.fixture
def labelled(request, tmp_path, fake_settings, backend):  # type: ignore[no-untyped-def]
    """A collection of 12 coloured pictures with the set ``colours`` stored once, and a
    second Collection on the same catalog for the other writer."""
    for colour in ("red", "green", "blue"):
        for i in range(4):
            solid(tmp_path / "p" / colour / f"{colour}{i}.png", colour)
    settings = fake_settings.model_copy(update={"db_url": db_url(request, backend)})
    coll, other = Collection(settings), Collection(settings)
    index_paths(coll, ColourEncoder(), [tmp_path / "p"])
    label_collection(coll, ColourEncoder(), ["red", "green", "blue"], name="colours")
    yield coll, other
    coll.close()
    other.close()


def _label_rows(coll: Collection) -> int:
    with coll.catalog.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ItemLabel)).scalar() or 0)


def test_delete_while_the_label_run_scores_stops_the_run(labelled):  # type: ignore[no-untyped-def]
    coll, other = labelled
    assert _label_rows(coll) == 12
    deleted: list[BaseException | None] = []
    scored: list[int] = []

    def delete_now(done: int, total: int) -> None:  # the run's progress: mid-run, claim held
        scored.append(done)
        if not deleted:
            deleted.extend(_in_threads(lambda: delete_label_set(other.catalog, "colours")))

    with pytest.raises(CollectionError, match="was deleted while this run was scoring") as err:
        label_collection(
            coll, ColourEncoder(), ["red", "green", "blue"], name="colours", chunk=4, progress=delete_now
        )
    assert deleted == [None] and "\n" not in str(err.value)
    assert scored == [4]  # noticed before the next chunk, not after scoring all 12
    assert list_label_sets(coll.catalog) == [] and _label_rows(coll) == 0
    # nothing left behind: the next run stores the set whole
    label_collection(coll, ColourEncoder(), ["red", "green", "blue"], name="colours")
    assert _label_rows(coll) == 12


def test_delete_before_a_first_run_stored_the_set_finds_none(labelled):  # type: ignore[no-untyped-def]
    coll, other = labelled
    deleted: list[BaseException | None] = []

    def delete_now(done: int, total: int) -> None:
        if not deleted:
            deleted.extend(_in_threads(lambda: delete_label_set(other.catalog, "fresh")))

    label_collection(coll, ColourEncoder(), ["red", "blue"], name="fresh", chunk=4, progress=delete_now)
    assert len(deleted) == 1 and isinstance(deleted[0], NotFoundError)
    assert [s.name for s in list_label_sets(coll.catalog)] == ["colours", "fresh"]
    assert _label_rows(coll) == 12 + 8  # the earlier set's and the new one's, whole


def _waiting_on_a_lock(coll: Collection) -> bool:
    """On PostgreSQL, whether another connection of this database waits on a lock now; on
    SQLite (no such view), True: the delete cannot finish while the run holds the file."""
    if coll.catalog.engine.dialect.name != "postgresql":
        return True
    with coll.catalog.engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar()
        )


def test_delete_while_the_label_run_stores_waits_and_deletes_it_all(labelled, monkeypatch):  # type: ignore[no-untyped-def]
    coll, other = labelled
    monkeypatch.setattr(label_store, "_INSERT_CHUNK", 3)  # 12 rows: 4 inserts in one transaction
    insert_rows = label_store._insert_rows
    deleter: list[threading.Thread] = []
    deleted: list[BaseException | None] = []

    def delete() -> None:
        try:
            delete_label_set(other.catalog, "colours")
            deleted.append(None)
        except BaseException as exc:  # reported to the test
            deleted.append(exc)

    def paused(session, rows):  # type: ignore[no-untyped-def]
        insert_rows(session, rows)
        if deleter:
            return
        deleter.append(threading.Thread(target=delete))
        deleter[0].start()  # the set's old row is locked and some new rows are in
        deadline = time.monotonic() + 60
        while not _waiting_on_a_lock(coll) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition: the delete reached the lock
        deleter[0].join(timeout=0.5)
        assert deleter[0].is_alive() and not deleted, "the delete did not wait for the run"

    monkeypatch.setattr(label_store, "_insert_rows", paused)
    summary = label_collection(coll, ColourEncoder(), ["red", "green", "blue"], name="colours")
    assert summary.labelled == 12
    deleter[0].join(timeout=120)
    assert deleted == [None]
    assert list_label_sets(coll.catalog) == [] and _label_rows(coll) == 0
