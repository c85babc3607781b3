"""``clipfind index --ray`` on a real two-node Ray cluster on this machine (two raylets,
one CPU each, started once for the module): the same vectors and skips as a local run,
an encode actor killed mid-run, and the driver killed mid-run and run again."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

import clipfind
from clipfind.errors import ClusterError
from tests.fakes import solid
from tests.test_indexer import _bad_files

NICENESS = "RAY_worker_niceness"  # Ray's setting, spelled as Ray reads it
# Worker processes start Python, torch and the model: seconds on an idle 2-core machine,
# minutes on one that other jobs keep busy (10× slower measured beside 5 other test runs).
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def ray_address():  # type: ignore[no-untyped-def]
    """HOST:PORT of a two-node cluster, one CPU each. Given as 127.0.0.1 (the tests'
    network guard lets only loopback through); Ray connects to the node address behind it."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # Ray runs its workers at nice 15; on a machine busy with other work they would crawl
    saved = os.environ.get(NICENESS)
    os.environ[NICENESS] = "0"
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    finally:
        if saved is None:
            del os.environ[NICENESS]
        else:
            os.environ[NICENESS] = saved
    address = "127.0.0.1:" + cluster.address.rsplit(":", 1)[1]
    # This process stays connected, as a library user's would: its runs share one Ray job,
    # so their read workers start once (the CLI runs below join on their own).
    ray.init(address=address, log_to_driver=False)
    try:
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_a_worker_reads_decodes_or_names_itself(tmp_path, settings, tiny_checkpoint):  # type: ignore[no-untyped-def]
    """The read task on its own (no cluster): a file it cannot read says which node could
    not; a broken one the reason a local run gives; a file whose content the catalog has
    is hashed, not decoded."""
    from clipfind.encoder import ClipEncoder
    from clipfind.imageio import content_hash
    from clipfind.indexer.ray_work import read_chunk
    from clipfind.indexer.walk import FileEntry

    good = solid(tmp_path / "good.jpg", "red")
    known = solid(tmp_path / "known.jpg", "blue")
    broken = _bad_files(tmp_path / "broken")
    entries = [FileEntry(str(p), 1, 1) for p in (good, known, tmp_path / "gone.jpg")]
    entries += [FileEntry(str(tmp_path / "broken" / name), 1, 1) for name in sorted(broken)]
    enc = ClipEncoder(f"local-dir:{tiny_checkpoint}", device="cpu")
    hints = [None, content_hash(known.read_bytes())] + [None] * (len(entries) - 2)
    rows, pixels = read_chunk(entries, hints, frozenset(), enc.preprocess, enc.image_size, 10**8)
    assert rows[0][1] == 0 and pixels.shape == (1, 3, enc.image_size, enc.image_size)
    assert rows[1] == (hints[1], None, None, None)
    assert rows[2][0] is None and "same path" in rows[2][3] and "on Ray node" in rows[2][3]
    for name, row in zip(sorted(broken), rows[3:], strict=True):
        assert row[1] is None and broken[name] in row[3], (name, row)


def test_a_chunk_decodes_identical_files_once_on_any_threads(tmp_path, tiny_checkpoint):  # type: ignore[no-untyped-def]
    """Two files with one content share a row of pixels (the driver keeps one vector);
    decoding on several threads gives the rows and pixels of one thread."""
    from clipfind.encoder import ClipEncoder
    from clipfind.indexer.ray_work import read_chunk
    from clipfind.indexer.walk import FileEntry

    photos = _photos(tmp_path / "photos", 5)
    copy = tmp_path / "copy.jpg"
    shutil.copy(photos[1], copy)
    entries = [FileEntry(str(p), 1, 1) for p in [*photos, copy]]
    enc = ClipEncoder(f"local-dir:{tiny_checkpoint}", device="cpu")
    args = (entries, [None] * len(entries), frozenset(), enc.preprocess, enc.image_size, 10**8)
    rows, pixels = read_chunk(*args)
    assert [r[1] for r in rows] == [0, 1, 2, 3, 4, 1] and len(pixels) == 5
    assert rows[5] == rows[1]
    rows4, pixels4 = read_chunk(*args, threads=4)
    assert rows4 == rows and np.array_equal(pixels4, pixels)


def test_a_cpu_actor_reads_and_encodes_its_part(tmp_path, tiny_checkpoint):  # type: ignore[no-untyped-def]
    """What a CPU actor runs (no cluster): the read rows, and one vector per decoded row,
    the model's own vectors of those pixels."""
    from clipfind.config import Settings
    from clipfind.encoder import ClipEncoder
    from clipfind.indexer.ray_work import EncodeWorker, read_chunk
    from clipfind.indexer.walk import FileEntry

    photos = _photos(tmp_path / "photos", 4)
    broken = _bad_files(tmp_path / "broken")
    entries = [FileEntry(str(p), 1, 1) for p in photos]
    entries += [FileEntry(str(tmp_path / "broken" / name), 1, 1) for name in sorted(broken)]
    spec = f"local-dir:{tiny_checkpoint}"
    worker = EncodeWorker(Settings(data_dir=tmp_path / "data", device="cpu"), spec, 1)
    rows, vectors = worker.read_encode(entries, [None] * len(entries), frozenset(), 10**8)
    enc = ClipEncoder(spec, device="cpu")
    want_rows, pixels = read_chunk(entries, [None] * len(entries), frozenset(), enc.preprocess,
                                   enc.image_size, 10**8)
    assert rows == want_rows and vectors.shape == (4, enc.dim)
    want = np.asarray(enc.encode_pixels(pixels), np.float32)
    assert min(float(a @ b) for a, b in zip(vectors, want, strict=True)) >= 0.9999
    empty_rows, none = worker.read_encode(entries[4:], [None] * len(broken), frozenset(), 10**8)
    assert all(r[1] is None for r in empty_rows) and len(none) == 0


def _photos(root: Path, n: int, start: int = 0) -> list[Path]:
    """``n`` distinct noisy photos of odd sizes (JPEG and PNG)."""
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        arr = rng.integers(0, 255, (41 + i % 7 * 13, 57 + i % 5 * 11, 3), dtype=np.uint8)
        path = root / f"sub{i % 3}" / f"photo{i:03d}.{'png' if i % 4 == 0 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
        out.append(path)
    return out


def _vectors(cf: clipfind.Clipfind) -> dict[str, np.ndarray]:
    with cf.collection.catalog.session() as session:
        rows = session.execute(text("SELECT path, vector FROM items WHERE vector IS NOT NULL"))
        return {p: np.frombuffer(v, np.float32) for p, v in rows}


def _check_exactly_once(cf: clipfind.Clipfind, indexed: int, skipped: int = 0) -> None:
    """Every file has one row; the indexed ones one vector each in FAISS."""
    with cf.collection.catalog.session() as session:
        paths = [r[0] for r in session.execute(text("SELECT path FROM items"))]
    assert len(paths) == len(set(paths)) == indexed + skipped
    assert cf.collection.catalog.count() == indexed
    assert len(cf.collection.vector_index()) == indexed  # FAISS ntotal


@pytest.mark.parametrize("actors_read", [True, False], ids=["cpu-actors-read", "read-tasks"])
def test_same_vectors_and_skips_as_a_local_run(tmp_path, tiny_checkpoint, ray_address, actors_read,  # type: ignore[no-untyped-def]
                                               monkeypatch):
    """On this CPU cluster the actors read their own files; the read tasks that feed GPU
    actors are run here too, beside the CPU actors."""
    from clipfind.indexer import ray_pool
    from clipfind.indexer.ray_pipeline import RayPipeline

    monkeypatch.setattr(ray_pool, "FUSED_ON_CPU", actors_read)
    streams: list[str] = []
    for name in ("_stream", "_stream_fused"):
        def spy(self, *args, _run=getattr(RayPipeline, name), _name=name):  # type: ignore[no-untyped-def]
            streams.append(_name)
            return _run(self, *args)
        monkeypatch.setattr(RayPipeline, name, spy)
    photos = tmp_path / "photos"
    _photos(photos, 14)
    shutil.copy(photos / "sub1" / "photo001.jpg", photos / "copy-of-001.jpg")  # encoded once
    solid(photos / "exif.jpg", "red", size=(60, 40), exif=_rotated())
    broken = _bad_files(photos / "broken")
    model = f"local-dir:{tiny_checkpoint}"
    # batches of 16 on Ray: each split into parts over both actors, joined by the driver
    with clipfind.open(model=model, data_dir=tmp_path / "local", batch_size=4) as local, \
            clipfind.open(model=model, data_dir=tmp_path / "ray", batch_size=16) as remote:
        want = local.index([photos])
        got = remote.index([photos], ray=ray_address)
        mine, theirs = _vectors(local), _vectors(remote)
        assert sorted(got.skipped) == sorted(want.skipped)
        assert {Path(p).name for p, _ in got.skipped} == set(broken)
        for path, reason in got.skipped:
            assert broken[Path(path).name] in reason, (path, reason)
        assert (got.added, got.encoded, want.encoded) == (want.added, 15, 15)
        assert mine.keys() == theirs.keys() and len(mine) == 16
        cosines = [float(mine[p] @ theirs[p]) for p in mine]
        assert min(cosines) >= 0.9999, min(cosines)
        _check_exactly_once(remote, 16, skipped=len(broken))

        (photos / "sub0" / "photo000.png").rename(photos / "moved.png")  # keeps its vector
        again = remote.index([photos], ray=ray_address)
        assert (again.moved, again.encoded, again.added) == (1, 0, 0)
        assert again.unchanged == 16 - 1 and not again.skipped and again.still_skipped == len(broken)
        assert np.array_equal(_vectors(remote)[str(photos / "moved.png")],
                              theirs[str(photos / "sub0" / "photo000.png")])
        assert streams == ["_stream_fused" if actors_read else "_stream"] * 2


def _rotated() -> bytes:
    exif = Image.Exif()
    exif[274] = 6  # shown rotated by 90°: decoded upright on the workers too
    return exif.tobytes()


def _encode_actor_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::EncodeWorker"):
                pids.append(int(entry))
    return pids


def test_an_encode_actor_killed_mid_run_is_restarted(tmp_path, tiny_checkpoint, ray_address):  # type: ignore[no-untyped-def]
    photos = tmp_path / "photos"
    _photos(photos, 16)
    killed: list[int] = []

    def kill_one(done: int, total: int) -> None:  # after the first batch is written
        if done and not killed:
            pids = _encode_actor_pids()
            assert pids, "no encode actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    with clipfind.open(model=f"local-dir:{tiny_checkpoint}", data_dir=tmp_path / "data",
                       batch_size=2) as cf:
        summary = cf.index([photos], ray=ray_address, progress=kill_one)
        assert killed and summary.added == summary.encoded == 16 and not summary.skipped
        _check_exactly_once(cf, 16)
        with clipfind.open(model=f"local-dir:{tiny_checkpoint}", data_dir=tmp_path / "local",
                           batch_size=2) as local:
            local.index([photos])
            mine, theirs = _vectors(local), _vectors(cf)
        assert min(float(mine[p] @ theirs[p]) for p in mine) >= 0.9999


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clipfind", "index", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_driver_killed_mid_run_then_run_again(tmp_path, tiny_checkpoint, ray_address):  # type: ignore[no-untyped-def]
    photos = tmp_path / "photos"
    _photos(photos, 24)
    data = tmp_path / "data"
    args = (str(photos), "--ray", ray_address, "--model", f"local-dir:{tiny_checkpoint}",
            "--data-dir", str(data), "--batch-size", "2", "--json")
    catalog = data / "collections" / "default" / "catalog.db"
    run = _cli(*args)
    written, deadline = 0, time.monotonic() + 600
    while run.poll() is None and time.monotonic() < deadline:
        written = _count(catalog)
        if written >= 4:
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    run.wait()
    assert run.returncode == -signal.SIGKILL, run.communicate()[1][-2000:]
    assert 4 <= _count(catalog) < 24  # killed mid-run: some batches written, not all

    again = _cli(*args)
    err = again.communicate(timeout=600)[1]
    assert again.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    with clipfind.open(data_dir=data) as cf:
        _check_exactly_once(cf, 24)


def _count(catalog: Path) -> int:
    if not catalog.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def test_no_cluster_is_one_line_and_exit_8(tmp_path, tiny_checkpoint):  # type: ignore[no-untyped-def]
    _photos(tmp_path / "photos", 1)
    with socket_free_port() as port:
        run = _cli(str(tmp_path / "photos"), "--ray", f"127.0.0.1:{port}", "--model",
                   f"local-dir:{tiny_checkpoint}", "--data-dir", str(tmp_path / "data"))
        err = run.communicate(timeout=120)[1]
    assert run.returncode == ClusterError.exit_code == 8
    assert "no Ray cluster is reachable at 127.0.0.1" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def socket_free_port():  # type: ignore[no-untyped-def]
    """A context holding a port nothing listens on (bound, not listening)."""
    import socket
    from contextlib import contextmanager

    @contextmanager
    def held():  # type: ignore[no-untyped-def]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            yield sock.getsockname()[1]

    return held()


def test_nothing_imports_ray_until_a_run_asks_for_it() -> None:
    """Ray is imported inside the Ray modules' functions only: the CLI, the library and
    the indexer (Ray modules included) load without it."""
    code = ("import sys, clipfind.api.cli, clipfind.library, clipfind.indexer.run, "
            "clipfind.indexer.ray_pipeline, clipfind.indexer.ray_pool, clipfind.indexer.ray_work; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
