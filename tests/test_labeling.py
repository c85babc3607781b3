"""Labeling a collection from stored vectors, with the colour encoder (known answers)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from clipfind.errors import NotFoundError
from clipfind.indexer import index_paths
from clipfind.search import Filters, build_terms, search
from clipfind.search.zeroshot.classify import classify_vector
from clipfind.search.zeroshot.label_export import export_label_set, read_csv
from clipfind.search.zeroshot.labeling import (
    delete_label_set,
    label_collection,
    label_rows,
    label_set_summary,
    list_label_sets,
)
from clipfind.store.collection import Collection
from tests.fakes import ColourEncoder, solid
from tests.pg import on_backend

COLOURS = ["red", "green", "blue", "yellow"]


@pytest.fixture
def fake_settings(request, fake_settings, backend):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL (tests/pg.py), a fresh catalog each."""
    return on_backend(request, fake_settings, backend)


@pytest.fixture
def coll(tmp_path, fake_settings, fake_encoder):  # type: ignore[no-untyped-def]
    for colour in COLOURS:
        for i in range(3):
            solid(tmp_path / "p" / colour / f"{colour}{i}.png", colour)
    for i in range(2):  # receipts: grey, no colour label describes them
        solid(tmp_path / "p" / "receipts" / f"r{i}.png", (150, 150, 150))
    collection = Collection(fake_settings)
    index_paths(collection, fake_encoder, [tmp_path / "p"])
    yield collection
    collection.close()


def _stem_labels(coll: Collection, name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in label_rows(coll.catalog, name):
        out.setdefault(Path(row.path).stem, []).append(row.label)
    return out


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("label must not decode images")

    import clipfind.imageio
    import clipfind.indexer.prepare

    for mod in (clipfind.imageio, clipfind.indexer.prepare):
        for fn in ("decode_image", "load_image", "read_bytes"):
            if hasattr(mod, fn):
                monkeypatch.setattr(mod, fn, boom)


def test_label_gives_each_item_its_colour_without_decoding(coll, fake_encoder, monkeypatch):
    _forbid_decoding(monkeypatch)
    images_before = fake_encoder.images_encoded
    summary = label_collection(coll, fake_encoder, COLOURS, name="colours")
    assert fake_encoder.images_encoded == images_before
    assert summary.scored == 14 and summary.labelled == 12 and summary.none_of_these == 2
    assert summary.counts == {c: 3 for c in COLOURS}
    labels = _stem_labels(coll, "colours")
    assert labels == {f"{c}{i}": [c] for c in COLOURS for i in range(3)}  # no receipt stored


def scores_of(res) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {s.label: s.score for s in res.scores}


def test_label_agrees_with_classify_for_every_item(coll, fake_encoder):
    label_collection(coll, fake_encoder, [*COLOURS, "cyan"], name="s", top=2, chunk=5)
    stored: dict[int, list[tuple[str, float]]] = {}
    for row in label_rows(coll.catalog, "s"):
        stored.setdefault(row.item_id, []).append((row.label, row.score))
    for ids, vecs in coll.catalog.iter_vectors():
        for item_id, vec in zip(ids, vecs, strict=True):
            res = classify_vector(fake_encoder, vec, [*COLOURS, "cyan"], top=2)
            want = [(a.label, a.score) for a in res.accepted]
            got = stored.get(int(item_id), [])
            assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-6)
            for (g_label, _), (w_label, w_score) in zip(got, want, strict=True):
                # two labels whose scores tie to float precision may come in either order
                # from a batched and a single product; anything else must agree exactly
                tied = abs(scores_of(res)[g_label] - w_score) < 1e-6
                assert g_label == w_label or tied


def test_search_filters_by_label_and_sets_coexist(coll, fake_encoder):
    label_collection(coll, fake_encoder, COLOURS, name="colours")
    label_collection(coll, fake_encoder, ["blue", "yellow"], name="bluey")
    assert [s.name for s in list_label_sets(coll.catalog)] == ["bluey", "colours"]
    page = search(coll, fake_encoder, build_terms("red"), k=20, filters=Filters(label="blue"))
    assert {Path(h.path).parent.name for h in page.hits} == {"blue"}
    page = search(coll, fake_encoder, build_terms("red"), k=20,
                  filters=Filters(label="colours:red"))
    assert {Path(h.path).stem for h in page.hits} == {"red0", "red1", "red2"}
    # red items are "none of these" for the bluey set... or closest yellow; never stored as red
    assert "red" not in label_set_summary(coll.catalog, "bluey").counts


def test_rerun_replaces_the_set(coll, fake_encoder):
    label_collection(coll, fake_encoder, COLOURS, name="s")
    label_collection(coll, fake_encoder, ["green", "magenta"], name="s", threshold=0.5)
    info = label_set_summary(coll.catalog, "s")
    assert info.labels == ["green", "magenta"]
    assert info.params["threshold"] == 0.5
    assert {r.label for r in label_rows(coll.catalog, "s")} <= {"green", "magenta"}
    # magenta light holds red and blue, green is in yellow; grey receipts get neither
    assert info.counts == {"green": 6, "magenta": 6}
    assert len(list_label_sets(coll.catalog)) == 1
    delete_label_set(coll.catalog, "s")
    with pytest.raises(NotFoundError):
        label_set_summary(coll.catalog, "s")


def test_path_glob_and_multi_label(coll, fake_encoder):
    summary = label_collection(coll, fake_encoder, ["red", "green", "blue"], name="m",
                               multi_label=True, path="*/yellow/*")
    assert summary.scored == 3
    # yellow light is red + green: both given, independently
    given = {stem: sorted(labels) for stem, labels in _stem_labels(coll, "m").items()}
    assert given == {f"yellow{i}": ["green", "red"] for i in range(3)}
    high = label_collection(coll, fake_encoder, ["red", "green"], name="m", multi_label=True,
                            path="*/yellow/*", threshold=1.01)
    assert high.labelled == 0 and label_rows(coll.catalog, "m") == []


def test_csv_export_round_trips(coll, fake_encoder):
    label_collection(coll, fake_encoder, COLOURS, name="colours", top=2)
    buf = io.StringIO()
    n = export_label_set(coll.catalog, "colours", "csv", buf)
    stored = label_rows(coll.catalog, "colours")
    assert n == len(stored) > 0
    buf.seek(0)
    assert read_csv(buf) == stored


def test_jsonl_and_coco_exports(coll, fake_encoder):
    label_collection(coll, fake_encoder, COLOURS, name="colours")
    buf = io.StringIO()
    export_label_set(coll.catalog, "colours", "jsonl", buf)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 12
    assert all(Path(x["path"]).parent.name == x["labels"][0]["label"] for x in lines)
    buf = io.StringIO()
    export_label_set(coll.catalog, "colours", "coco", buf)
    doc = json.loads(buf.getvalue())
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    images = {i["id"]: i["file_name"] for i in doc["images"]}
    assert list(cats.values()) == COLOURS and len(images) == 12
    for ann in doc["annotations"]:
        assert Path(images[ann["image_id"]]).parent.name == cats[ann["category_id"]]


def test_sigmoid_model_stores_sigmoid_scores(coll, fake_encoder):
    """A model with a logit bias (SigLIP-style) labels with sigmoid(scale·cos + bias)."""
    import numpy as np

    from clipfind.search.zeroshot.prompts import prompt_vectors

    class SigColour(ColourEncoder):
        logit_bias = -60.0
        is_sigmoid = True

    sig = SigColour()
    summary = label_collection(coll, sig, COLOURS, name="sig", top=4)
    assert summary.mode == "sigmoid"
    vecs = prompt_vectors(sig, COLOURS).vectors
    for row in label_rows(coll.catalog, "sig"):
        cos = float(coll.catalog.vector_of(row.item_id) @ vecs[COLOURS.index(row.label)])
        assert row.score == pytest.approx(1 / (1 + np.exp(-(100 * cos - 60))), abs=1e-5)
    # yellow items: yellow scores ~1; red and green (both in yellow light) beat the background too
    yellow = [r for r in label_rows(coll.catalog, "sig") if "yellow" in r.path]
    assert {r.label for r in yellow} == {"yellow", "red", "green"}
    assert all(r.score > 0.99 for r in yellow if r.label == "yellow")
