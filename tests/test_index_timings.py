"""Where an index run's time went (``timings`` in the summary), and commands with nothing
to encode load no model. No speed is asserted: only that the split is there, is never
negative and adds up to no more than the command's own wall time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clipfind.config import Settings
from clipfind.encoder import ClipEncoder
from clipfind.indexer import index_paths
from clipfind.indexer.timings import STAGES, describe, with_start
from clipfind.library import Clipfind
from clipfind.store.collection import Collection
from tests.fakes import solid

COLOURS = ("red", "green", "blue", "yellow", "white", "black")
# /proc counts a process's start in clock ticks (10 ms); rounding to the millisecond
SLACK_S = 0.05


def _photos(root: Path) -> list[Path]:
    return [solid(root / f"{c}.jpg", c, size=(64, 48)) for c in COLOURS]


def _non_negative(timings: dict[str, dict[str, float]]) -> None:
    for part in timings.values():
        assert all(v >= 0 for v in part.values()), timings


def test_index_command_reports_each_stage_within_its_wall_time(tmp_path: Path, tiny_checkpoint: Path) -> None:
    root = tmp_path / "photos"
    _photos(root)
    cmd = [
        sys.executable,
        "-m",
        "clipfind",
        "index",
        str(root),
        "--json",
        "--model",
        f"local-dir:{tiny_checkpoint}",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    timings = doc["timings"]
    assert set(timings["wall"]) == {"start", *STAGES, "other"}
    assert set(timings["cpu"]) == {"decode", "model"}
    _non_negative(timings)
    # the run's stages add up to the run (``other`` is the rest, never negative) ...
    run_stages = sum(v for k, v in timings["wall"].items() if k != "start")
    assert doc["seconds"] - 0.01 <= run_stages <= doc["seconds"] + 0.01
    # ... and with the process's start-up to no more than the command's wall time
    assert timings["wall"]["start"] > 0
    assert timings["wall"]["start"] + doc["seconds"] <= wall + SLACK_S
    # six images were decoded and encoded after the model was loaded
    assert doc["encoded"] == 6 and timings["wall"]["load"] > 0
    assert timings["cpu"]["decode"] > 0 and timings["cpu"]["model"] > 0
    assert timings["wall"]["decode"] + timings["wall"]["model"] <= doc["pipeline_seconds"] + 0.01


def test_a_run_with_nothing_new_spends_nothing_on_the_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    root = tmp_path / "photos"
    _photos(root)
    settings = Settings(data_dir=tmp_path / "data", model=f"local-dir:{tiny_checkpoint}")
    first = index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    again = index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    assert (first.encoded, again.encoded, again.unchanged) == (6, 0, 6)
    _non_negative(again.timings)
    wall, cpu = again.timings["wall"], again.timings["cpu"]
    assert (wall["load"], wall["decode"], wall["model"], cpu["decode"], cpu["model"]) == (0, 0, 0, 0, 0)
    assert sum(wall.values()) <= again.seconds + 0.01
    assert again.as_dict()["timings"] == again.timings


def test_summary_line_names_every_stage() -> None:
    timings = {
        "wall": {"load": 1.25, "scan": 0.01, "decode": 0.5, "model": 3.0, "write": 0.2, "other": 0.04},
        "cpu": {"decode": 0.9, "model": 5.5},
    }
    line = describe(with_start(timings, run_seconds=0.0))
    assert line.startswith("time: start-up ")
    for part in (
        "model load 1.2s",
        "scan 0.0s",
        "decode 0.5s",
        "model 3.0s",
        "write 0.2s",
        "other 0.0s",
        "decoding 0.9s",
        "model 5.5s",
    ):
        assert part in line, line
    assert describe({}) == ""


RUN_COMMANDS = r"""
import json, sys
from clipfind.api.cli.app import main
seen = []
for args in json.loads(sys.argv[1]):
    code = main(args)
    seen.append([code, [m for m in ("torch", "open_clip", "onnxruntime") if m in sys.modules]])
print(json.dumps(seen))
"""


def test_commands_with_nothing_to_encode_load_no_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """One process runs the commands in turn, as the console script would: none of them
    imports a model runtime until the text search at the end (the check's control)."""
    root = tmp_path / "photos"
    _photos(root)
    solid(root / "sub" / "grey.jpg", (128, 128, 128))
    data = tmp_path / "data"
    clip = Clipfind(Settings(data_dir=data, model=f"local-dir:{tiny_checkpoint}"))
    clip.index([root])
    counts = clip.label("colours", ["red", "green", "blue"]).counts
    label = next(name for name, n in counts.items() if n > 0)
    where = ["--data-dir", str(data)]
    commands = [
        ["index", str(root), *where],
        ["info", *where],
        ["labels", "list", *where],
        ["labels", "show", "colours", *where],
        ["search", "#1", "--label", f"colours:{label}", *where],
        ["forget", str(root / "sub"), *where],
        ["search", "a red photo", *where],
    ]
    done = subprocess.run(
        [sys.executable, "-c", RUN_COMMANDS, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert [code for code, _ in seen] == [0] * len(commands), done.stderr
    assert [mods for _, mods in seen[:-1]] == [[]] * (len(commands) - 1), seen
    assert seen[-1][1], seen  # a text query does load a model runtime


@pytest.mark.parametrize("age", [None, 10.0])
def test_start_is_added_only_when_the_process_age_is_known(
    monkeypatch: pytest.MonkeyPatch, age: float | None
) -> None:
    import clipfind.indexer.timings as timings_module

    monkeypatch.setattr(timings_module, "process_age", lambda: age)
    timings = {"wall": {"load": 1.0}, "cpu": {}}
    out = with_start(timings, run_seconds=4.0)
    assert out["wall"].get("start") == (None if age is None else 6.0)
