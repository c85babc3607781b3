"""The classify / label / labels / index-texts / search --texts commands, end to end
through ``api.cli.main`` with the colour encoder (known answers)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from clipfind.api.cli import main
from tests.fakes import ColourEncoder, solid


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    enc = ColourEncoder()
    monkeypatch.setattr("clipfind.api.cli.common.make_encoder", lambda settings, coll: enc)
    base = ["--data-dir", str(tmp_path / "data"), "--model", "fake-colour"]

    def run(*args: str, code: int = 0, model: bool = True) -> str:
        capsys.readouterr()
        opts = base if model else base[:2]
        assert main([*args, *opts]) == code, capsys.readouterr()
        return capsys.readouterr().out

    return run


def test_classify_file_and_item_id(cli, tmp_path):
    blue = solid(tmp_path / "blue.png", "blue")
    out = json.loads(cli("classify", str(blue), "--labels", "red, green,blue", "--json"))
    assert out[0]["label"] == "blue" and set(out[0]) == {"label", "score"}
    assert [o["score"] for o in out] == sorted((o["score"] for o in out), reverse=True)
    solid(tmp_path / "p" / "green.png", "green")
    cli("index", str(tmp_path / "p"), "--json")
    out = json.loads(cli("classify", "#1", "--labels", "red,green", "--json", "--top", "1"))
    assert [o["label"] for o in out] == ["green"]
    text = cli("classify", str(blue), "--labels", "red,yellow", "--background", "blue")
    assert "none of these" in text
    cli("classify", "#99", "--labels", "red", code=6)
    cli("classify", str(blue), "--labels", " , ", code=2)


def test_label_show_export_and_search_by_label(cli, tmp_path):
    for colour in ("red", "green", "blue"):
        for i in range(2):
            solid(tmp_path / "p" / f"{colour}{i}.png", colour)
    solid(tmp_path / "p" / "receipt.png", (140, 140, 140))
    cli("index", str(tmp_path / "p"), "--json")
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("red\ngreen\nblue\n")
    summary = json.loads(cli("label", "--labels-file", str(labels_file), "--name", "c", "--json"))
    assert summary["counts"] == {"red": 2, "green": 2, "blue": 2}
    assert summary["none_of_these"] == 1
    shown = json.loads(cli("labels", "show", "c", "--json", model=False))
    assert shown["counts"] == summary["counts"] and shown["none_of_these"] == 1
    assert [s["name"] for s in json.loads(cli("labels", "list", "--json", model=False))] == ["c"]
    out = tmp_path / "c.csv"
    cli("labels", "export", "c", "--format", "csv", "--output", str(out), model=False)
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(Path(r["path"]).stem for r in rows) == sorted(
        f"{c}{i}" for c in ("red", "green", "blue") for i in range(2))
    assert all(Path(r["path"]).stem.startswith(r["label"]) for r in rows)
    coco = json.loads(cli("labels", "export", "c", "--format", "coco", model=False))
    assert len(coco["annotations"]) == 6
    page = json.loads(cli("search", "red", "--label", "c:green", "--json"))
    assert sorted(Path(h["path"]).stem for h in page["results"]) == ["green0", "green1"]
    cli("labels", "export", "c", "--format", "xml", code=2, model=False)
    cli("labels", "delete", "c", "--json", model=False)
    cli("labels", "show", "c", code=6, model=False)


def test_index_texts_and_search_texts(cli, tmp_path):
    texts = tmp_path / "captions.jsonl"
    texts.write_text("\n".join(json.dumps({"id": f"c{i}", "text": t}) for i, t in
                               enumerate(["a red kite", "a green field", "a blue lake"])))
    assert json.loads(cli("index-texts", str(texts), "--json"))["added"] == 3
    lake = solid(tmp_path / "lake.png", "blue")
    page = json.loads(cli("search", "--image", str(lake), "--texts", "-k", "2", "--json"))
    assert len(page["results"]) == 2 and page["results"][0]["key"] == "c2"
    assert page["results"][0]["text"] == "a blue lake"
