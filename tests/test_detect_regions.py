"""Picture-region proposals (search/segments.py) and partial-query competitors
(search/detect_scoring.py): known answers on drawn pictures and hand-made vectors."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from clipfind.search.detect.proposals import iou
from clipfind.search.detect.scoring import class_scores, partial_queries, query_texts
from clipfind.search.detect.segments import felzenszwalb, rank_by_heat, segment_boxes

SQUARE = (30, 40, 70, 80)
DISC = (110, 20, 150, 60)


def _picture() -> Image.Image:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 6, (100, 180, 3))
    img = Image.fromarray(np.clip(128 + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle((SQUARE[0], SQUARE[1], SQUARE[2] - 1, SQUARE[3] - 1), fill=(200, 40, 40))
    draw.ellipse((DISC[0], DISC[1], DISC[2] - 1, DISC[3] - 1), fill=(40, 60, 210))
    return img


def test_felzenszwalb_separates_flat_regions():
    pixels = np.zeros((20, 30, 3), np.float32)
    pixels[:, 15:] = (0, 0, 255)
    labels = felzenszwalb(pixels, k=50, min_size=4)
    assert len(np.unique(labels)) == 2
    assert (labels[:, :15] == labels[0, 0]).all() and (labels[:, 15:] == labels[0, -1]).all()


def test_segment_boxes_fit_each_drawn_object():
    boxes = segment_boxes(_picture())
    best = iou(np.array([SQUARE, DISC], np.float32), boxes).max(axis=1)
    assert (best >= 0.8).all(), best
    # never the whole picture, never slivers
    assert ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) < 0.95 * 180 * 100).all()
    assert (np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= 5).all()  # 3 work px


def test_rank_by_heat_prefers_the_box_that_just_holds_the_hot_region():
    heat = np.zeros((10, 18), np.float32)
    heat[4:8, 3:7] = 1.0  # the square, at 10 px per cell
    tight = [30, 40, 70, 80]
    inside = [40, 50, 60, 70]
    around = [0, 0, 120, 100]
    elsewhere = DISC
    scores = rank_by_heat(np.array([tight, inside, around, elsewhere], np.float32), heat, 180, 100)
    assert int(np.argmax(scores)) == 0 and scores[3] <= 0.0, scores


def test_partial_queries_leave_out_one_content_word():
    assert partial_queries("a red car") == ["a car", "a red"]
    assert partial_queries("an orange cat") == ["a cat", "an orange"]
    assert partial_queries("a dog") == [] and partial_queries("dog") == []
    assert partial_queries("a photo of a dog on a beach") == ["a photo of on a beach",
                                                              "a photo of a dog on"]


def test_a_part_that_is_another_query_competes_as_that_query():
    qt = query_texts(["a red car", "a car"], ("background",), partial=True)
    assert qt.texts == ("a red car", "a car", "background", "a red")
    assert qt.competitors == ((2, 3), (2,))
    assert query_texts(["a red car"], ("background",), partial=False).competitors == ((1,),)


class _Scale:
    logit_scale = 10.0
    is_sigmoid = False


def test_a_blue_car_is_not_a_red_car_when_the_part_fits_better():
    # axes: car-ness, redness, blueness
    texts = np.array([[0.7, 0.7, 0.0],   # "a red car"
                      [0.0, 0.0, 0.0],   # "background"
                      [1.0, 0.0, 0.0],   # "a car"
                      [0.0, 1.0, 0.0]], np.float32)  # "a red"
    qt = query_texts(["a red car"], ("background",), partial=True)
    blue_car = np.array([[0.8, 0.0, 0.6]], np.float32)
    red_car = np.array([[0.7, 0.7, 0.0]], np.float32)
    with_parts = class_scores(_Scale(), np.concatenate([blue_car, red_car]), texts, qt)[:, 0]
    assert with_parts[0] < 0.5 < with_parts[1]
    alone = class_scores(_Scale(), blue_car, texts[:2], query_texts(["a red car"], ("background",), False))
    assert alone[0, 0] > 0.5  # against the background only, the blue car passes


def test_a_line_of_in_between_colour_joins_a_neighbour():
    """Anti-aliasing leaves a line of in-between colour along a diagonal edge; its own box
    would cover half the picture, so it is merged away, not kept as a region."""
    pixels = np.zeros((40, 40, 3), np.float32)
    rows, cols = np.mgrid[0:40, 0:40]
    pixels[cols > rows] = (255, 0, 0)
    pixels[np.abs(cols - rows) <= 1] = (128, 0, 0)  # the edge, 3 px wide
    labels = felzenszwalb(pixels, k=50, min_size=4)
    assert len(np.unique(labels)) == 2


def test_rotated_shapes_get_a_box_that_fits():
    from clipfind.training.synthetic import render_scene

    for seed in range(8):
        image, [(_, truth)] = render_scene([("pink", "square")], (160, 120), np.random.default_rng(seed))
        assert iou(np.array([truth], np.float32), segment_boxes(image)).max() >= 0.8, seed
