"""Several servers, one collection: two ``clipfind serve`` processes (real uvicorn, on
loopback) over one PostgreSQL catalog and one shared collection folder. What one server's
index job commits is searchable through the other on its next request (every search
checks the catalog's generation, one row read, and reloads or rebuilds its index when it
moved), and neither ever answers with an item scored by a vector other than its own."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import request
from tests.pg_procs import announced, clipfind, fill, stop

N_FIRST, N_SECOND = 24, 8


def _get(address: tuple[str, int], url: str) -> Any:
    status, _, body = request(address, "GET", url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def _post(address: tuple[str, int], url: str, doc: dict[str, Any]) -> Any:
    status, _, body = request(address, "POST", url, body=json.dumps(doc).encode(),
                              headers={"Content-Type": "application/json"})
    assert status in (200, 202), (url, status, body[:300])
    return json.loads(body)


def _scores(address: tuple[str, int]) -> dict[str, float]:
    page = _get(address, "/search?q=red&k=200")
    return {hit["path"]: hit["score"] for hit in page["results"]}


def _watch_until_done(job_on: tuple[str, int], job_id: str, watched: tuple[str, int],
                      timeout: float = 240) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Search through ``watched`` over and over while the job runs on ``job_on``."""
    seen: list[dict[str, float]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(_scores(watched))
        job = _get(job_on, f"/jobs/{job_id}")
        if job["status"] not in ("queued", "running"):
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"the index job did not finish in {timeout}s")


def _assert_consistent(seen: list[dict[str, float]], truth: dict[str, float]) -> None:
    """Every answer scored each item by that item's own vector, and what a server has
    shown it keeps showing (an index never goes back to an older catalog)."""
    before: set[str] = set()
    for answer in seen:
        for path, score in answer.items():
            assert path in truth, path
            assert abs(score - truth[path]) < 1e-4, (path, score, truth[path])
        assert before <= set(answer), sorted(before - set(answer))
        before = set(answer)


@pytest.fixture
def two_servers(tmp_path: Path, postgres_server):  # type: ignore[no-untyped-def]
    url = postgres_server.new_database()
    photos = tmp_path / "photos"
    fill(photos, N_FIRST)
    common = ("--json", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / "data"),
              "--db-url", url, "--root", str(photos), "--model", "fake-colour", "--device", "cpu")
    procs = [clipfind("serve", *common, delay=0.2, batch_size=4)]
    try:
        first = announced(procs[0])  # A creates the catalog; then B opens it
        procs.append(clipfind("serve", *common, delay=0.2, batch_size=4))
        yield first, announced(procs[1]), photos
    finally:
        logs = [stop(p) for p in procs]
        assert all("Traceback" not in log for log in logs), logs


def test_an_index_job_on_one_server_is_searchable_through_the_other(two_servers):  # type: ignore[no-untyped-def]
    a, b, photos = two_servers
    assert _scores(a) == {} and _scores(b) == {}
    job = _post(a, "/index", {})
    done, seen_b = _watch_until_done(a, job["id"], b)
    assert done["status"] == "done", done
    # B's very next request after the job: every item, by the generation check alone
    truth = _scores(a)
    assert len(truth) == N_FIRST
    assert _scores(b) == truth
    _assert_consistent(seen_b, truth)

    # and the other way round: new pictures indexed through B, searched through A
    fill(photos, N_SECOND, start=N_FIRST)
    job = _post(b, "/index", {})
    done, seen_a = _watch_until_done(b, job["id"], a)
    assert done["status"] == "done", done
    truth = _scores(b)
    assert len(truth) == N_FIRST + N_SECOND
    assert _scores(a) == truth
    _assert_consistent(seen_a, truth)
    info_a, info_b = _get(a, "/info"), _get(b, "/info")
    assert info_a["index"]["generation"] == info_b["index"]["generation"]
    assert info_a["index"]["vectors"] == info_b["index"]["vectors"] == N_FIRST + N_SECOND


def _save_repeatedly(path: Path, generation: int, rounds: int) -> None:
    import numpy as np

    from clipfind.store.vectors import VectorIndex

    n = 10 * generation  # the generation can be told from the content
    vecs = np.random.default_rng(generation).standard_normal((n, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = VectorIndex.build(np.arange(n, dtype=np.int64), vecs, 16, generation=generation)
    for _ in range(rounds):
        index.save(path)


def test_processes_saving_one_index_file_never_leave_a_mixed_pair(tmp_path):  # type: ignore[no-untyped-def]
    """Servers sharing a collection folder save the index they rebuilt to the same file:
    each save completes, and every load gets an index with its own generation."""
    import multiprocessing

    from clipfind.store.vectors import VectorIndex

    path = tmp_path / "index.faiss"
    ctx = multiprocessing.get_context("fork")
    savers = [ctx.Process(target=_save_repeatedly, args=(path, g, 150)) for g in (1, 2)]
    for proc in savers:
        proc.start()
    loads, mixed = 0, 0
    while any(proc.is_alive() for proc in savers):
        loaded = VectorIndex.load(path, mmap=False)
        if loaded is not None:
            loads += 1
            mixed += len(loaded) != 10 * loaded.generation
    for proc in savers:
        proc.join(60)
    assert [proc.exitcode for proc in savers] == [0, 0]
    assert loads > 0 and mixed == 0, (loads, mixed)
