"""The synthetic shapes: deterministic, held-out pairs never in training data, captions
that say what is drawn, scene boxes around the drawn pixels."""

from __future__ import annotations

import numpy as np
import pytest

from clipfind.training.synthetic import (
    ALL_COMBOS,
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    SHAPES,
    ShapesDataset,
    ShapeSpec,
    random_caption,
    render,
    render_scene,
)


def test_same_seed_same_pictures_and_captions():
    a, b = ShapesDataset(6, seed=3), ShapesDataset(6, seed=3)
    for i in range(6):
        assert np.array_equal(np.asarray(a[i][0]), np.asarray(b[i][0]))
        assert a[i][1] == b[i][1]
    assert not np.array_equal(np.asarray(a[0][0]), np.asarray(ShapesDataset(6, seed=4)[0][0]))


def test_epochs_reword_but_keep_pictures():
    data = ShapesDataset(40, seed=1)
    first = [data.caption(i) for i in range(40)]
    image = np.asarray(data.image(0))
    data.set_epoch(1)
    assert [data.caption(i) for i in range(40)] != first
    assert np.array_equal(np.asarray(data.image(0)), image)


def test_held_out_pairs_never_appear_in_training_data():
    for group in (1, 8):
        data = ShapesDataset(600, seed=0, group=group)
        seen = {(s.colour, s.shape) for s in map(data.spec, range(len(data)))}
        assert not seen & HELD_OUT
        assert len(seen) == len(ALL_COMBOS) - len(HELD_OUT)  # every other pair does appear


def test_groups_share_colour_background_and_size():
    data = ShapesDataset(32, group=8)
    for start in range(0, 32, 8):
        specs = [data.spec(i) for i in range(start, start + 8)]
        assert len({(s.colour, s.background, s.size) for s in specs}) == 1
    assert data.ordered and not ShapesDataset(8).ordered


def test_captions_name_colour_or_shape_and_only_true_attributes():
    spec = ShapeSpec("orange", "star", "small", "on the left", "black")
    rng = np.random.default_rng(0)
    captions = [random_caption(spec, rng) for _ in range(200)]
    for c in captions:
        assert "orange" in c or "star" in c
        assert not any(w in c for w in ("red", "circle", "large", "grey", "right"))
    assert "an orange star" in " ".join(captions)  # the article agrees
    assert any("star" not in c for c in captions) and any("orange" not in c for c in captions)
    assert spec.caption == "a small orange star on the left on a black background"


def test_render_draws_the_colour_on_the_background():
    spec = ShapeSpec("blue", "square", "large", "in the centre", "white")
    arr = np.asarray(render(spec, 64, np.random.default_rng(0))).astype(int)
    centre, corner = arr[32, 32], arr[2, 2]
    assert np.abs(centre - COLOURS["blue"]).max() <= 20
    assert np.abs(corner - BACKGROUNDS["white"]).max() <= 12


def test_scene_boxes_hold_their_shapes():
    objects = [("red", "circle"), ("blue", "star"), ("yellow", "triangle"), ("green", "cross")]
    image, boxes = render_scene(objects, (320, 240), np.random.default_rng(2))
    assert image.size == (320, 240)
    arr = np.asarray(image).astype(int)
    for (colour, shape), (label, (x0, y0, x1, y1)) in zip(objects, boxes, strict=True):
        assert label == f"{colour} {shape}"
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
        near = np.abs(arr - COLOURS[colour]).max(axis=2) <= 30
        inside = near[int(y0):int(np.ceil(y1)) + 1, int(x0):int(np.ceil(x1)) + 1].sum()
        assert inside > 0.9 * near.sum() > 0  # nearly all of the colour lies in its box
    for i, (_, a) in enumerate(boxes):  # shapes do not overlap
        for _, b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_scene_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="do not fit"):
        render_scene([("red", s) for s in SHAPES] * 10, 64, np.random.default_rng(0))
