"""`clipfind eval`: numbers computed by hand on small cases, and known-answer encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipfind.api.cli import main
from clipfind.indexer import index_paths
from clipfind.store.collection import Collection
from clipfind.training.data import CaptionPairs, Labelled, Pair
from clipfind.training.evaluate import (
    evaluate_index,
    evaluate_retrieval,
    evaluate_zero_shot,
    zero_shot_scores,
)
from clipfind.training.metrics import recall_at_k
from tests.fakes import solid


def _unit(*rows: list[float]) -> np.ndarray:
    m = np.asarray(rows, np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_recall_matches_hand_computed_case():
    images = _unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    # caption -> its image: 0, 1, 2, 1 (image 1 has two captions)
    texts = _unit([1, 0, 0], [0.9, 0.1, 0], [0, 0, 1], [0, 0.2, 0.8])
    r = recall_at_k(images, texts, [0, 1, 2, 1], ks=(1, 2))
    # t0 → image 0 first; t1 → image 0 beats image 1 (rank 2); t2 → image 2 first;
    # t3 → image 2 (0.8) beats image 1 (0.2): rank 2.
    assert r["text_to_image_R@1"] == pytest.approx(2 / 4)
    assert r["text_to_image_R@2"] == pytest.approx(4 / 4)
    # image 1's best caption is t3 (0.24 > t1's 0.11): every image finds one of its captions first
    assert r["image_to_text_R@1"] == pytest.approx(1.0)


def test_recall_ties_go_to_the_earlier_item():
    images = _unit([1, 0], [1, 0])  # two identical images
    texts = _unit([1, 0], [1, 0])
    r = recall_at_k(images, texts, [0, 1], ks=(1, 2))
    assert r["text_to_image_R@1"] == pytest.approx(0.5)  # caption 1 ties with image 0, ranked second
    assert r["text_to_image_R@2"] == pytest.approx(1.0)


def test_zero_shot_scores_hand_case():
    classes = _unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    images = _unit([1, 0.1, 0], [0.2, 1, 0], [0.9, 0, 0.5], [0, 0.6, 1])
    top1, top5, per_class = zero_shot_scores(images, classes, [0, 1, 2, 2], ["a", "b", "c"])
    # image 2 (class c) looks like a: one of the two c images is wrong
    assert top1 == pytest.approx(3 / 4)
    assert top5 == pytest.approx(1.0)
    assert per_class == {"a": 1.0, "b": 1.0, "c": 0.5}


def test_zero_shot_with_known_colour_encoder(tmp_path, fake_encoder):
    for colour in ("red", "green", "blue"):
        for i in range(3):
            solid(tmp_path / "set" / colour / f"{i}.png", colour)
    solid(tmp_path / "set" / "red" / "wrong.png", "blue")  # a mislabelled picture
    from clipfind.training.data import load_labelled

    data = load_labelled(tmp_path / "set")
    report = evaluate_zero_shot(fake_encoder, data, ["a photo of a {}."])
    assert report.images == 10 and report.classes == 3
    assert report.top1 == pytest.approx(9 / 10)
    assert report.per_class == {"blue": 1.0, "green": 1.0, "red": pytest.approx(3 / 4)}
    assert report.mean_per_class == pytest.approx((1 + 1 + 0.75) / 3)


def test_retrieval_with_known_colour_encoder_counts_images_once(tmp_path, fake_encoder):
    pairs = [Pair(solid(tmp_path / "r.png", "red"), "a red thing"),
             Pair(tmp_path / "r.png", "something red"),
             Pair(solid(tmp_path / "g.png", "green"), "a green thing"),
             Pair(solid(tmp_path / "b.png", "blue"), "a yellow thing"),  # a wrong caption
             Pair(tmp_path / "missing.png", "gone")]
    report = evaluate_retrieval(fake_encoder, CaptionPairs(pairs))
    assert (report.images, report.captions, report.skipped) == (3, 4, 1)
    # "a yellow thing" is closest to the red and green images, so the blue one comes third
    assert report.recall["text_to_image_R@1"] == pytest.approx(3 / 4)
    assert report.recall["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert report.recall["image_to_text_R@5"] == pytest.approx(1.0)


@pytest.fixture
def colour_collection(tmp_path, fake_settings, fake_encoder) -> Collection:
    rng = np.random.default_rng(0)
    for i in range(48):
        solid(tmp_path / "p" / f"{i}.png", tuple(int(v) for v in rng.integers(0, 256, 3)))
    solid(tmp_path / "p" / "dup.png", (10, 10, 10))
    solid(tmp_path / "p" / "dup2.png", (10, 10, 10))
    coll = Collection(fake_settings)
    index_paths(coll, fake_encoder, [tmp_path / "p"])
    return coll


def test_exact_index_against_itself_is_one(colour_collection):
    report = evaluate_index(colour_collection, k=5, queries=50)
    assert report.kind == "flat" and report.vectors == 50
    assert report.recall == 1.0


def test_approximate_index_recall_is_measured(colour_collection):
    report = evaluate_index(colour_collection, k=5, queries=50, kind="ivf-sq8")
    assert report.kind == "ivf-sq8"
    assert 0.3 < report.recall <= 1.0


def test_cli_eval_index_and_zero_shot_json(tmp_path, colour_collection, capsys):
    data_dir = str(colour_collection.settings.data_dir)
    assert main(["eval", "--index", "--data-dir", data_dir, "-k", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "index" and doc["recall"] == 1.0 and doc["k"] == 3
    assert main(["eval", "--data-dir", data_dir]) == 2  # no dataset and no --index
    assert "give a dataset" in capsys.readouterr().err


def test_labelled_csv_and_task_guess(tmp_path):
    from clipfind.api.cli.train_cmds import _guess_task
    from clipfind.training.data import load_labelled

    solid(tmp_path / "a.png", "red")
    (tmp_path / "labels.csv").write_text("image,label\na.png,red\n")
    (tmp_path / "caps.csv").write_text("image,caption\na.png,a red thing\n")
    data = load_labelled(tmp_path / "labels.csv")
    assert data == Labelled([tmp_path / "a.png"], ["red"])
    assert _guess_task(tmp_path / "labels.csv") == "zeroshot"
    assert _guess_task(tmp_path / "caps.csv") == "retrieval"
    assert _guess_task(Path(tmp_path)) == "zeroshot"
