"""Zero-shot detection with the project's reference model (a tiny CLIP trained on
synthetic shapes, one shape per training picture): scenes of one to three shapes on a
larger canvas, with distractors, whose boxes are known from how they were drawn."""

from __future__ import annotations

import pytest

from search.detect import detect
from search.evaluate_detection import evaluate_scenes

pytestmark = pytest.mark.slow
SCENES = 20
# The targets. Not met yet with the current reference model (a 32 px ResNet whose
# stride-32 map is 1 cell per 32 px): measured found 0.2-0.55, clean 0.71-1.0,
# absent 0.45-0.6 on 20 scenes (seeds 7 (here), 3 and 1 (benchmarks/detect_bench.py)).
# Kept as non-strict xfails: they report XPASS once a reference model with usable
# spatial features lands.
TARGET = pytest.mark.xfail(strict=False, reason="reference model too coarse for the targets; "
                           "see README 'Zero-shot detection'")


@pytest.fixture(scope="module")
def scene_metrics(reference_encoder):  # type: ignore[no-untyped-def]
    return evaluate_scenes(reference_encoder, n=SCENES, seed=7)


def test_better_than_chance_floors(scene_metrics):
    """Regression floors under today's measurements (a random box has IoU >= 0.5 with a
    shape of ~1/20 of the canvas almost never; boxing everything gives clean 0). Without
    the relative margin (DetectOptions.relative_margin=None) clean is 0.64 here."""
    assert scene_metrics["found"] >= 0.2, scene_metrics
    assert scene_metrics["clean"] >= 0.65, scene_metrics
    assert scene_metrics["absent_clean"] >= 0.5, scene_metrics


@TARGET
def test_finds_the_queried_shape(scene_metrics):
    assert scene_metrics["found"] >= 0.8, scene_metrics


@TARGET
def test_leaves_distractors_of_another_colour_alone(scene_metrics):
    assert scene_metrics["clean"] >= 0.9, scene_metrics


@TARGET
def test_absent_shape_gets_no_box(scene_metrics):
    assert scene_metrics["absent_clean"] >= 0.9, scene_metrics


@TARGET
def test_two_queries_share_one_image_and_each_finds_its_own(reference_encoder):
    import numpy as np

    from clipfind.training.synthetic import render_scene
    from search.proposals import iou

    image, boxes = render_scene([("red", "circle"), ("blue", "square")], (160, 120),
                                np.random.default_rng(3))
    dets = detect(reference_encoder, image, ["a red circle", "a blue square"])
    for label, truth in boxes:
        best = next(d for d in dets if d.label == f"a {label}")
        b = best.box
        assert iou(np.array([[b.xmin, b.ymin, b.xmax, b.ymax]]), np.array([truth]))[0, 0] >= 0.5
