"""The reference model (trained by `clipfind train`'s code on synthetic shapes, shipped) knows the
answers it should: zero-shot colour-shape accuracy on pairs it saw and on pairs it never
saw together, and text → image retrieval. Also the offline demo end to end."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clipfind.training.data import Labelled
from clipfind.training.evaluate import class_vectors, evaluate_zero_shot, zero_shot_scores
from clipfind.training.synthetic import (
    ALL_COMBOS,
    HELD_OUT_COMBOS,
    SEEN_COMBOS,
    ShapesDataset,
    ShapeSpec,
    render,
)

pytestmark = pytest.mark.slow
PROMPTS = ["a {}.", "a photo of a {}."]
# Measured on the shipped model with benchmarks/reference_model.py: 0.933 / 0.679 / 1.000 on
# these samples (the same with AVX-512, AVX2 and plain kernels). The bounds sit a little
# below: a retrained model (another CPU, 2 threads) scored 0.905 / 0.721 on them.
SEEN_MIN, HELD_OUT_MIN, T2I_R1_MIN = 0.85, 0.65, 0.90


def _accuracy(encoder, combos, n: int, seed: int) -> float:  # type: ignore[no-untyped-def]
    """Zero-shot among all 42 colour-shape classes."""
    data = ShapesDataset(n, seed=seed, combos=combos, random_captions=False)
    images = [data.image(i) for i in range(n)]
    classes = [f"{c} {s}" for c, s in ALL_COMBOS]
    vecs = encoder.encode_images(images)
    labels = [classes.index(data.spec(i).label) for i in range(n)]
    top1, _, _ = zero_shot_scores(vecs, class_vectors(encoder, classes, PROMPTS), labels, classes)
    return top1


def test_zero_shot_on_seen_pairs(reference_encoder):
    assert _accuracy(reference_encoder, SEEN_COMBOS, 210, seed=101) >= SEEN_MIN


def test_zero_shot_on_held_out_pairs(reference_encoder):
    assert _accuracy(reference_encoder, HELD_OUT_COMBOS, 140, seed=102) >= HELD_OUT_MIN


def test_text_to_image_recall_at_1(reference_encoder):
    """One large centred picture per pair on grey: "a red circle" must find its own."""
    rng = np.random.default_rng(7)
    images = [render(ShapeSpec(c, s, "large", "in the centre", "grey"), 64, rng) for c, s in ALL_COMBOS]
    texts = reference_encoder.encode_texts([f"a {c} {s}" for c, s in ALL_COMBOS])
    best = (texts @ reference_encoder.encode_images(images).T).argmax(axis=1)
    assert float(np.mean(best == np.arange(len(ALL_COMBOS)))) >= T2I_R1_MIN


def test_eval_on_an_image_folder_through_the_cli(reference_model, tmp_path, capsys):
    from clipfind.api.cli import main

    data = ShapesDataset(60, seed=103, combos=SEEN_COMBOS, random_captions=False)
    for i in range(len(data)):
        folder = tmp_path / "set" / data.spec(i).label.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        data.image(i).save(folder / f"{i}.png")
    assert main(["eval", str(tmp_path / "set"), "--model", f"local-dir:{reference_model}",
                 "--templates", "simple", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["task"] == "zeroshot" and doc["images"] == 60
    assert doc["top1"] >= SEEN_MIN - 0.05


def test_labelled_folder_matches_direct_scores(reference_encoder, tmp_path):
    data = ShapesDataset(20, seed=104, combos=HELD_OUT_COMBOS, random_captions=False)
    paths = []
    for i in range(20):
        paths.append(tmp_path / f"{i}.png")
        data.image(i).save(paths[-1])
    labels = [data.spec(i).label for i in range(20)]
    report = evaluate_zero_shot(reference_encoder, Labelled(paths, labels), PROMPTS)
    classes = sorted(set(labels))
    vecs = reference_encoder.encode_images([data.image(i) for i in range(20)])
    direct, _, _ = zero_shot_scores(vecs, class_vectors(reference_encoder, classes, PROMPTS),
                                    [classes.index(lab) for lab in labels], classes)
    assert report.top1 == pytest.approx(direct, abs=0.051)  # PNG round trip may flip one


def test_demo_end_to_end(reference_model, tmp_path):
    from clipfind.api.demo import run_demo

    report = run_demo(tmp_path / "data", k=5, count=300)
    assert report.indexed == 300 and Path(report.photos).is_dir()
    seen = [r for r in report.searches if not r.held_out]
    assert all(r.possible >= 3 for r in seen)
    # 22/28 hits (0.79) with the reference model trained on an AVX-512 machine (seen top-1
    # 0.945; the README's 0.969 came from another CPU: the weights depend on its kernels);
    # chance is ~1/42
    assert sum(r.correct for r in seen) >= 0.7 * sum(r.possible for r in seen)
    again = run_demo(tmp_path / "data", k=5, count=300)  # cached photos, nothing re-encoded
    assert again.encoded == 0 and report.encoded == 300
    assert [r.hits for r in again.searches] == [r.hits for r in report.searches]
    sections = {s.title.split(" (")[0]: s.lines for s in report.sections}
    labelled = re.search(r"(\d+)/(\d+) labelled correctly", sections["zero-shot labeling"][0])
    assert labelled and int(labelled[1]) >= 0.8 * int(labelled[2])  # measured 273/300
    # the hint the demo prints works as printed (it once lacked --collection demo)
    hint = shlex.split(sections["zero-shot labeling"][1].removeprefix("try: "))
    shown = subprocess.run([str(Path(sys.executable).with_name(hint[0])), *hint[1:]],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and shown.stdout.startswith("demo-shapes: "), shown.stderr
    scenes = re.search(r"(\d+)/(\d+) scenes", sections["zero-shot detection"][0])
    assert scenes and int(scenes[2]) == 10
