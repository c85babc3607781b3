"""A one-shot ``clipfind search`` / ``classify '#ID'`` on a collection indexed with the
ONNX engine runs the real console entry point in a fresh process and imports neither
torch nor open_clip (``python -X importtime`` lists every module a process imports),
and answers what the torch path answers. Nor does it import what else a query does not
need and that costs it a tenth of a second or more: SQLAlchemy and Alembic (the catalog
is read with ``sqlite3``, clipfind/store/quick.py), pydantic-settings, rich (nothing is
logged or drawn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import clipfind
from tests.fakes import save_tiny_checkpoint, solid

COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
NOT_FOR_A_QUERY = {"torch", "open_clip", "torchvision", "sqlalchemy", "alembic",
                   "pydantic_settings", "rich"}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A collection indexed in this process with the ONNX engine (which exports)."""
    root = tmp_path_factory.mktemp("cold")
    spec = f"local-dir:{save_tiny_checkpoint('tiny-clip-test', root / 'model')}"
    for i, colour in enumerate(COLOURS):
        solid(root / "photos" / f"{i}-{colour}.png", colour, size=(40 + i, 32))
    env = {
        "CLIPFIND_DATA_DIR": str(root / "data"),
        "CLIPFIND_MODEL_CACHE": str(root / "cache"),
        "CLIPFIND_COLLECTION": "c",
    }
    with clipfind.open(
        "c", model=spec, data_dir=root / "data", engine="auto", model_cache=root / "cache"
    ) as cf:
        assert cf.index([root / "photos"]).added == len(COLOURS)
        assert cf.info().as_dict()["engine"] == "images: onnx int8; texts: onnx int8"
    return env


def _run(env: dict[str, str], *argv: str, as_json: bool = True) -> tuple[object, set[str]]:
    """``clipfind ARGV --json`` in a fresh interpreter: the parsed output (the lines
    without ``as_json``) and the top-level names of every module it imported."""
    full = {**os.environ, **env, "CLIPFIND_ENGINE": "auto"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "clipfind", *argv, *(["--json"] * as_json)],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "json" in imported  # importtime output was read
    return (json.loads(proc.stdout) if as_json else proc.stdout.splitlines()), imported


def _torch_answer(env: dict[str, str], method: str, *args: object, **kwargs: object) -> object:
    with clipfind.open("c", data_dir=env["CLIPFIND_DATA_DIR"], engine="torch", text_precision="fp32") as cf:
        return getattr(cf, method)(*args, **kwargs)


def test_search_imports_no_torch_and_ranks_as_torch_does(indexed: dict[str, str]) -> None:
    doc, imported = _run(indexed, "search", "a red square", "-k", "6", "--text-precision", "fp32")
    assert not imported & NOT_FOR_A_QUERY
    assert {"onnxruntime", "faiss", "sqlite3"} <= imported
    ref = _torch_answer(indexed, "search", "a red square", k=6)
    got = doc["results"]  # type: ignore[index]
    assert [r["id"] for r in got] == [h.id for h in ref.hits]  # type: ignore[attr-defined]
    for r, h in zip(got, ref.hits, strict=True):  # type: ignore[attr-defined]
        assert abs(r["score"] - h.score) <= 2e-3


def test_default_int8_query_imports_no_torch_either(indexed: dict[str, str]) -> None:
    doc, imported = _run(indexed, "search", "a photo of a dog", "-k", "3")
    assert not imported & NOT_FOR_A_QUERY and len(doc["results"]) == 3  # type: ignore[index]


def test_a_query_printed_for_a_person_imports_no_rich_either(indexed: dict[str, str]) -> None:
    lines, imported = _run(indexed, "search", "a red square", "-k", "2", as_json=False)
    assert not imported & NOT_FOR_A_QUERY
    assert [line.split()[0] for line in lines] == ["1", "2"]  # type: ignore[union-attr]
    assert all(line.endswith(".png") for line in lines)  # type: ignore[union-attr]


def test_classify_a_stored_item_imports_no_torch(indexed: dict[str, str]) -> None:
    labels = "red,green,blue,yellow"
    doc, imported = _run(indexed, "classify", "#1", "--labels", labels)
    assert not imported & NOT_FOR_A_QUERY
    ref = _torch_answer(indexed, "classify", "#1", labels.split(","))
    assert [s["label"] for s in doc] == [s.label for s in ref.scores]  # type: ignore[attr-defined]
