"""Detection geometry with known answers: heat maps made by hand, boxes we can compute."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipfind.search.detect import proposals as P
from clipfind.search.detect.refine import variants
from clipfind.training.evaluate_detection import Scored, average_precision


def _blob_map(h: int, w: int, rows: slice, cols: slice, value: float = 1.0) -> np.ndarray:
    heat = np.zeros((h, w), np.float32)
    heat[rows, cols] = value
    return heat


def test_iou_and_containment_by_hand():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [2, 2, 4, 4], [20, 20, 30, 30]], np.float32)
    assert P.iou(a, b)[0] == pytest.approx([50 / 150, 4 / 100, 0.0])
    assert P.containment(a, b)[0] == pytest.approx([0.5, 1.0, 0.0])


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [2, 2, 6, 6]], np.float32)
    scores = np.array([0.9, 0.95, 0.5, 0.4], np.float32)
    assert P.nms(boxes, scores, 0.5) == [1, 2, 3]  # the nested small box survives plain NMS
    assert P.nms(boxes, scores, 0.5, contained_threshold=0.8) == [1, 2]


def test_heat_proposal_of_one_blob_maps_cells_to_image_pixels():
    # 10 x 20 map over a 400 x 100 image: cell = 20 px wide, 10 px high.
    heat = _blob_map(10, 20, slice(2, 5), slice(4, 9))
    boxes = P.heat_proposals(heat, width=400, height=100)
    assert len(boxes) >= 1
    best = boxes[0]
    # the blob covers columns 4..8 (80..180 px) and rows 2..4 (20..50 px); bilinear
    # upsampling moves each edge by less than one cell
    assert best == pytest.approx([80, 20, 180, 50], abs=20)
    assert P.iou(best, np.array([80, 20, 180, 50]))[0, 0] > 0.6


def test_heat_proposals_find_two_separate_objects_strongest_first():
    heat = _blob_map(12, 12, slice(1, 4), slice(1, 4), 1.0)
    heat[7:11, 6:11] = 0.8
    boxes = P.heat_proposals(heat, 120, 120)
    truth = np.array([[10, 10, 40, 40], [60, 70, 110, 110]], np.float32)
    overlaps = P.iou(boxes, truth)
    assert overlaps[:, 0].max() > 0.6 and overlaps[:, 1].max() > 0.6
    assert overlaps[0, 0] > 0.6  # the hotter object ranks first


def test_flat_or_empty_maps_give_no_boxes():
    assert len(P.heat_proposals(np.zeros((5, 5), np.float32), 50, 50)) == 0
    assert len(P.heat_proposals(np.full((5, 5), np.nan, np.float32), 50, 50)) == 0


def test_components_are_four_connected():
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 1]], bool)
    regions = sorted((r0, c0, r1, c1) for r0, c0, r1, c1, _ in P.components(mask))
    assert regions == [(0, 0, 0, 1), (1, 2, 2, 3), (2, 0, 2, 0)]


def test_sliding_windows_cover_the_image_and_stay_inside():
    boxes = P.sliding_windows(333, 97, scales=(0.35, 0.6))
    assert boxes[0] == pytest.approx([0, 0, 333, 97])
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 333 + 1e-3).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 97 + 1e-3).all()
    small = boxes[1:][np.isclose(boxes[1:, 2] - boxes[1:, 0], 0.35 * 97)]
    assert small[:, 0].min() == 0 and small[:, 2].max() == pytest.approx(333)


def test_windows_heat_peaks_where_high_scoring_windows_overlap():
    windows = np.array([[0, 0, 50, 50], [50, 0, 100, 50], [0, 50, 50, 100], [50, 50, 100, 100]],
                       np.float32)
    heat = P.windows_heat(windows, np.array([0.1, 0.9, 0.1, 0.1], np.float32), 100, 100, cells=10)
    assert heat.shape == (10, 10)
    assert heat[:5, 5:].min() == pytest.approx(0.9) and heat[5:, :5].max() == pytest.approx(0.1)


def test_context_crop_is_square_and_letterboxed_with_border_colour():
    img = Image.new("RGB", (200, 100), (128, 128, 128))
    img.paste((255, 0, 0), (50, 40, 150, 60))  # a wide red bar
    crop = P.context_crop(img, [50, 40, 150, 60], context=0.1)
    assert crop.width == crop.height == 120  # 100 px + 2 x 10 % margin
    arr = np.asarray(crop)
    assert tuple(arr[60, 60]) == (255, 0, 0)  # the bar in the middle
    assert tuple(arr[2, 60]) == (128, 128, 128)  # letterbox takes the grey border colour


def test_refine_variants_move_one_side_each():
    out = variants([10, 10, 30, 50], 0.5, 100, 100)
    assert len(out) == 8
    changed = (np.abs(out - np.array([10, 10, 30, 50])) > 0).sum(axis=1)
    assert (changed == 1).all()


def test_average_precision_by_hand():
    truths = {(1, 7): [(0, 0, 10, 10)], (2, 7): [(0, 0, 10, 10)]}
    perfect = [Scored(1, 7, 0.9, (0, 0, 10, 10)), Scored(2, 7, 0.8, (1, 0, 10, 10))]
    assert average_precision(perfect, truths) == pytest.approx(1.0)
    # a false positive ranked first: precision 1/2 at recall 1/2, 2/3 at recall 1
    mixed = [Scored(1, 7, 0.95, (50, 50, 60, 60)), *perfect]
    assert average_precision(mixed, truths) == pytest.approx(2 / 3, abs=0.01)
    # half the objects found, no false positives: AP ~ 0.5
    assert average_precision(perfect[:1], truths) == pytest.approx(51 / 101, abs=1e-6)
    # a duplicate box on the same object is a false positive
    dup = [perfect[0], Scored(1, 7, 0.85, (0, 0, 10, 10)), perfect[1]]
    assert average_precision(dup, truths) < 1.0
