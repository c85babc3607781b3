"""CLI leftovers of issue 12, through the installed console script: a missing folder to
index creates nothing; ``search | head -1`` ends quietly; a bad collection name is
clipfind's own error from the CLI and from ``clipfind.open``."""

from __future__ import annotations

import subprocess

import pytest

import clipfind
from clipfind.errors import QueryError
from tests.fakes import solid
from tests.test_cli_errors import CLIPFIND, one_line, run


def test_index_of_a_missing_folder_creates_nothing(tmp_path):
    proc = run(
        "index",
        str(tmp_path / "nope"),
        "--data-dir",
        str(tmp_path / "data"),
        "--model",
        "local-dir:/nonexistent/model",
    )
    assert proc.returncode == 6, proc.stderr
    assert "nope" in one_line(proc) and "does not exist" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_a_bad_collection_name_is_clipfinds_own_error(tmp_path):
    with pytest.raises(QueryError, match="collection name 'bad/name'"):
        clipfind.open(collection="bad/name", data_dir=tmp_path)
    proc = run("search", "dog", "--collection", "bad/name", "--data-dir", str(tmp_path))
    assert proc.returncode == 2 and "collection name 'bad/name'" in one_line(proc)
    assert list(tmp_path.iterdir()) == []


def test_search_into_a_closed_pipe_ends_quietly(tmp_path, tiny_checkpoint):
    photos = tmp_path / "photos"
    for i in range(120):
        solid(photos / f"p{i:02d}.png", ("red", "green", "blue")[i % 3])
    data = tmp_path / "data"
    assert (
        run(
            "index", str(photos), "--data-dir", str(data), "--model", f"local-dir:{tiny_checkpoint}"
        ).returncode
        == 0
    )
    for extra in ([], ["--json"]):
        # `clipfind search red -k 60 | head -c 1`: the reader goes after one byte
        cmd = f"'{CLIPFIND}' search red -k 120 {' '.join(extra)} --data-dir '{data}' | head -c 1"
        proc = subprocess.run(
            ["bash", "-c", f'{cmd}; echo " ${{PIPESTATUS[0]}}" >&2'],
            capture_output=True,
            text=True,
            timeout=180,
        )
        code = int(proc.stderr.split()[-1])
        noise = proc.stderr.rsplit(" ", 1)[0].strip()
        assert noise == "", noise  # no traceback, no "Exception ignored ... BrokenPipeError"
        # 1: what click programs do on EPIPE (typer's handler); 0: all was written in time
        assert code in (0, 1), code
        assert len(proc.stdout) == 1
