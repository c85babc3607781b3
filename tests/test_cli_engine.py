"""The engine's commands as a user runs them: ``--json`` documents, exit codes, a real
checkpoint on real photos mixed with broken files, and interrupted runs (SIGKILL,
SIGINT) that resume with every image exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipfind.api.cli import main
from tests.fakes import ColourEncoder, solid
from tests.test_indexer import _bad_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def colour_cli(monkeypatch):  # type: ignore[no-untyped-def]
    """``main(argv)`` → (exit code, parsed JSON or text) with the colour encoder."""
    import clipfind.api.cli.common as cmds

    encoder = ColourEncoder()
    monkeypatch.setattr(cmds, "make_encoder", lambda settings, coll: encoder)

    def run(capsys, *argv: str):  # type: ignore[no-untyped-def]
        code = main(list(argv))
        out = capsys.readouterr().out
        return code, (json.loads(out) if "--json" in argv and code == 0 else out)

    run.encoder = encoder  # type: ignore[attr-defined]
    return run


def test_every_engine_command_prints_one_json_document(tmp_path, capsys, colour_cli):
    for colour in ("red", "green", "blue"):
        solid(tmp_path / "p" / f"{colour}.jpg", colour)
    reasons = _bad_files(tmp_path / "p" / "broken")
    data = ["--data-dir", str(tmp_path / "data")]
    code, doc = colour_cli(capsys, "index", str(tmp_path / "p"), *data, "--json")
    assert code == 0
    assert (doc["added"], doc["skipped"], doc["encoded"]) == (3, len(reasons), 3)
    assert {Path(f["path"]).name for f in doc["skipped_files"]} == set(reasons)
    assert all(f["reason"] for f in doc["skipped_files"])

    code, doc = colour_cli(capsys, "search", "red", *data, "--json", "-k", "2")
    assert code == 0
    hits = doc["results"]
    assert next(Path(h["path"]).name for h in hits) == "red.jpg" and len(hits) == 2
    assert all({"id", "path", "score"} <= set(h) for h in hits)
    assert hits[0]["score"] > hits[1]["score"]

    code, doc = colour_cli(capsys, "info", *data, "--json")
    assert code == 0
    assert (doc["model"], doc["dim"], doc["indexed"], doc["skipped"]) == (
        "fake-colour", 8, 3, len(reasons))
    assert doc["index"]["vectors"] == 3 and doc["index"]["kind"] == "flat"
    assert {Path(f["path"]).name for f in doc["skipped_files"]} == set(reasons)

    code, doc = colour_cli(capsys, "forget", str(tmp_path / "p" / "broken"), *data, "--json")
    assert (code, doc) == (0, {"removed": len(reasons)})
    code, doc = colour_cli(capsys, "forget", str(tmp_path / "p" / "red.jpg"), *data, "--json")
    assert (code, doc) == (0, {"removed": 1})
    code, doc = colour_cli(capsys, "search", "red", *data, "--json")
    assert "red.jpg" not in {Path(h["path"]).name for h in doc["results"]}


def test_info_in_words(tmp_path, capsys, colour_cli):
    solid(tmp_path / "p" / "red.jpg", "red")
    (tmp_path / "p" / "empty.jpg").write_bytes(b"")
    data = ["--data-dir", str(tmp_path / "data")]
    assert colour_cli(capsys, "index", str(tmp_path / "p"), *data)[0] == 0
    code, text = colour_cli(capsys, "info", *data)
    assert code == 0
    for words in ("fake-colour (dim 8)", "indexed: 1", "skipped: 1", "flat, 1 vectors",
                  "empty.jpg: empty file"):
        assert words in text, text


def test_search_filters_paging_and_min_score_from_the_cli(tmp_path, capsys, colour_cli):
    from PIL import Image

    for i, year in enumerate((2019, 2020, 2021)):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[36867] = f"{year}:05:01 10:00:00"
        path = tmp_path / "p" / f"y{year}" / f"red{i}.jpg"
        path.parent.mkdir(parents=True)
        Image.new("RGB", (20, 20), (250 - i * 20, 0, 0)).save(path, exif=exif.tobytes())
    solid(tmp_path / "p" / "y2020" / "blue.jpg", "blue")
    os.utime(tmp_path / "p" / "y2020" / "blue.jpg", (1_500_000_000, 1_500_000_000))  # 2017 mtime
    data = ["--data-dir", str(tmp_path / "data")]
    colour_cli(capsys, "index", str(tmp_path / "p"), *data)

    def names(*extra: str) -> list[str]:
        code, doc = colour_cli(capsys, "search", "red", *data, "--json", *extra)
        assert code == 0
        return [Path(h["path"]).name for h in doc["results"]]

    assert names("--after", "2020", "-k", "1") == ["red1.jpg"]  # filter before top-k
    assert names("--before", "2019-12-31") == ["red0.jpg", "blue.jpg"]  # mtime for no EXIF
    assert names("--path", "*/y2021/*") == ["red2.jpg"]
    assert names("--after", "2020-05", "--before", "2020-05") == ["red1.jpg"]
    everything = names("-k", "4")
    assert names("-k", "2") + names("-k", "2", "--offset", "2") == everything
    assert names("--min-score", "0.9") == everything[:3]
    code, _text = colour_cli(capsys, "search", "red", *data, "--after", "yesterday")
    assert code == 2


def test_real_checkpoint_on_real_photos_with_broken_files(tmp_path, capsys, tiny_checkpoint,
                                                          coco_mini):
    photos = sorted((coco_mini / "val2017").glob("*.jpg"))[:12]
    root = tmp_path / "p"
    (root / "coco").mkdir(parents=True)
    for p in photos:
        (root / "coco" / p.name).symlink_to(p)
    reasons = _bad_files(root / "broken")
    argv = ["index", str(root), "--data-dir", str(tmp_path / "data"), "--model",
            f"local-dir:{tiny_checkpoint}", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["added"], doc["encoded"], doc["skipped"]) == (12, 12, len(reasons))
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["added"], doc["encoded"], doc["unchanged"]) == (0, 0, 12)
    assert doc["still_skipped"] == len(reasons)
    # a second model on the same collection is refused, naming both
    code = main(["search", "dog", "--data-dir", str(tmp_path / "data"), "--model",
                 "tiny-rn-test"])
    err = capsys.readouterr().err
    assert code == 4 and "tiny-rn-test" in err and str(tiny_checkpoint) in err


def test_unknown_model_is_one_sentence_and_exit_code_3(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CLIPFIND_DATA_DIR": str(tmp_path)}
    photo = solid(tmp_path / "red.png", "red")  # classifying a file needs no collection
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("clipfind")), "classify", str(photo), "--labels",
         "a,b", "--model", "ViT-B-32/no_such_tag"], capture_output=True, text=True, env=env,
        timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "ViT-B-32/no_such_tag" in lines[0] and "local-dir:" in lines[0]


def test_offline_default_model_is_explained(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    photo = solid(tmp_path / "red.png", "red")
    code = main(["classify", str(photo), "--labels", "a,b", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 3 and "ViT-B-32/laion2b_s34b_b79k" in err and "local-dir:" in err
    assert "Traceback" not in err


# -- interrupted runs ----------------------------------------------------------------------
_CHILD = """
import signal, sys, time
# a background shell starts children with SIGINT ignored; a terminal does not
signal.signal(signal.SIGINT, signal.default_int_handler)
import clipfind.api.cli.common as cmds
from tests.fakes import ColourEncoder

class Slow(ColourEncoder):
    def encode_pixels(self, pixels):
        time.sleep(0.2)
        return super().encode_pixels(pixels)

cmds.make_encoder = lambda settings, coll: Slow()
from clipfind.api.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _indexed(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute("select count(*) from items").fetchone()[0])
    except sqlite3.Error:
        return 0


def _run_until(argv: list[str], db: Path, rows: int, sig: int) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, *argv], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 120
    while _indexed(db) < rows and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_kill_9_then_ctrl_c_then_resume_indexes_every_image_once(tmp_path, fake_settings):
    from clipfind.indexer import index_paths
    from clipfind.store.collection import Collection

    n = 40
    for i in range(n):
        solid(tmp_path / "p" / f"img{i:02d}.png", (i * 6, 255 - i * 6, 100))
    db = fake_settings.collection_dir / "catalog.db"
    argv = ["index", str(tmp_path / "p"), "--data-dir", str(fake_settings.data_dir),
            "--batch-size", "2", "--workers", "1"]

    killed = _run_until(argv, db, 6, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    after_kill = _indexed(db)
    assert 6 <= after_kill < n

    stopped = _run_until(argv, db, after_kill + 6, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted; finished batches are saved" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    after_int = _indexed(db)
    assert after_kill + 6 <= after_int < n

    encoder = ColourEncoder()
    summary = index_paths(Collection(fake_settings), encoder, [tmp_path / "p"])
    assert encoder.images_encoded == summary.added == n - after_int
    assert summary.unchanged == after_int and summary.skipped == []
    with sqlite3.connect(db) as con:
        paths = [r[0] for r in con.execute("select path from items where status = 'ok'")]
    assert sorted(paths) == sorted(str(p) for p in (tmp_path / "p").iterdir())
    assert len(Collection(fake_settings).vector_index()) == n
