"""Ctrl-C during a long ``clipfind index`` (the installed console script in a
subprocess): exit 130 with "finished batches are saved", the committed batches are in
the catalog, and running the command again indexes the rest."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

from tests.fakes import clean_env, solid
from tests.test_cli_errors import CLIPFIND, REPO

COUNT = 400


def indexed(catalog) -> int:  # type: ignore[no-untyped-def]
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM items").fetchone()[0])
    except sqlite3.Error:  # not created yet, or being written
        return 0


def test_ctrl_c_during_index_keeps_finished_batches_and_resumes(tmp_path, tiny_checkpoint):
    photos = tmp_path / "photos"
    for i in range(COUNT):
        solid(photos / f"p{i:03d}.png", ("red", "green", "blue", "white")[i % 4], size=(96, 80))
    data = tmp_path / "data"
    argv = [
        str(CLIPFIND),
        "index",
        str(photos),
        "--data-dir",
        str(data),
        "--model",
        f"local-dir:{tiny_checkpoint}",
        "--batch-size",
        "4",
        "--workers",
        "1",
    ]
    env = clean_env()
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    catalog = data / "collections" / "default" / "catalog.db"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and indexed(catalog) == 0:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()  # still running after its first batch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines[-1] == "interrupted; finished batches are saved, run the command again to resume"
    saved = indexed(catalog)
    assert 0 < saved < COUNT
    again = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert again.returncode == 0, again.stderr
    assert indexed(catalog) == COUNT
