"""What the CLI prints: counts that agree between ``index`` and ``info``, indexed texts
in ``info``, the documented ``detect --json`` shape, and scores that never read -0.000.
Through the installed console script, with the tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes import solid
from tests.test_cli_errors import run


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-output")
    photos = root / "photos"
    for colour in ("red", "green"):
        solid(photos / f"{colour}.png", colour, size=(96, 64))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG at all")
    return {"photos": photos, "data": root / "data", "model": tiny_checkpoint}


def test_reindex_and_info_count_the_same_files(folder):
    data, photos = folder["data"], folder["photos"]
    model = f"local-dir:{folder['model']}"
    first = run("index", str(photos), "--model", model, "--json", data_dir=data)
    assert first.returncode == 0, first.stderr
    assert (json.loads(first.stdout)["added"], json.loads(first.stdout)["skipped"]) == (2, 1)

    again = run("index", str(photos), "--json", data_dir=data)
    doc = json.loads(again.stdout)
    assert (doc["unchanged"], doc["still_skipped"], doc["skipped"], doc["added"]) == (2, 1, 0, 0)
    words = run("index", str(photos), data_dir=data).stdout
    assert "unchanged 2, skipped 0, still skipped 1" in words

    info = json.loads(run("info", "--json", data_dir=data).stdout)
    assert (info["indexed"], info["skipped"]) == (doc["unchanged"], doc["still_skipped"])


def test_info_counts_indexed_texts(folder, tmp_path):
    data = folder["data"]
    assert run("index", str(folder["photos"]), "--model", f"local-dir:{folder['model']}",
               data_dir=data).returncode == 0
    assert json.loads(run("info", "--json", data_dir=data).stdout)["texts"] == 0
    texts = tmp_path / "captions.txt"
    texts.write_text("a red square\na green square\na blue circle\n")
    added = run("index-texts", str(texts), data_dir=data)
    assert added.returncode == 0, added.stderr
    assert json.loads(run("info", "--json", data_dir=data).stdout)["texts"] == 3
    assert "     texts: 3" in run("info", data_dir=data).stdout


def test_detect_json_is_the_documented_shape(folder):
    """docs/detection.md: ``{"image", "width", "height", "detections": [{"label",
    "score", "box": {"xmin", "ymin", "xmax", "ymax"}}]}`` in the picture's pixels."""
    image = folder["photos"] / "red.png"
    proc = run("detect", str(image), "-q", "a red square", "-q", "a green square",
               "--threshold", "0", "--max", "3", "--json", "--model",
               f"local-dir:{folder['model']}", data_dir=folder["data"])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"image", "width", "height", "detections"}
    assert (doc["image"], doc["width"], doc["height"]) == (str(image), 96, 64)
    assert doc["detections"], "threshold 0 keeps the best boxes"
    for det in doc["detections"]:
        assert set(det) == {"label", "score", "box"}
        assert set(det["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert 0 <= det["box"]["xmin"] < det["box"]["xmax"] <= 96
    scores = [d["score"] for d in doc["detections"]]
    assert scores == sorted(scores, reverse=True)


def test_scores_never_print_minus_zero(monkeypatch, capsys, tmp_path):
    from clipfind.api.cli import main
    from clipfind.library import Clipfind
    from clipfind.search.engine import Hit, SearchPage

    hits = [Hit(1, "/a.jpg", 0.5), Hit(2, "/b.jpg", -0.0001), Hit(3, "/c.jpg", -0.25)]
    monkeypatch.setattr(Clipfind, "search", lambda self, *a, **kw: SearchPage(hits, 0, 20))
    assert main(["search", "anything", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["0.500", "0.000", "-0.250"]


def test_a_long_path_prints_whole_on_its_line_and_as_it_is(monkeypatch, capsys, tmp_path):
    """Piped output is for grep and copy-paste: no wrapping at 80 columns (rich wrapped
    there) and no emoji codes turned into emoji."""
    from clipfind.api.cli import main
    from clipfind.library import Clipfind
    from clipfind.search.engine import Hit, SearchPage

    path = "/photos/" + "a folder with a long name/" * 6 + "my :dog: [b]x[/b].jpg"
    hits = [Hit(7, path, 0.25)]
    monkeypatch.setattr(Clipfind, "search", lambda self, *a, **kw: SearchPage(hits, 0, 20))
    assert main(["search", "anything", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"   1   0.250  #7      {path}\n"
    monkeypatch.setattr(Clipfind, "search", lambda self, *a, **kw: SearchPage([], 0, 20))
    assert main(["search", "anything", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no results\n"
