"""Measuring zero-shot detection.

* :func:`evaluate_detection`: AP50 on a COCO-format instances file (``clipfind eval
  --detection instances.json``): every category name is a query, boxes are matched to
  ground truth at IoU ≥ 0.5, average precision per category (COCO's 101-point
  interpolation), and its mean over the categories that occur; ``AP`` is the same
  averaged over IoU 0.50:0.05:0.95 (COCO's headline figure). Any detector
  (search/detect/choice.py: CLIP, OWL-ViT, OWLv2) answers on the same annotations.
* :func:`evaluate_scenes`: the synthetic-shapes checks (find the queried shape, leave
  distractors of another colour alone, return nothing for an absent shape), used by
  the tests with the reference model and by ``benchmarks/detect_bench.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipfind.encoding import Encoder
from clipfind.errors import ClipfindError, QueryError
from clipfind.imageio import load_image
from clipfind.search.detect.detector import DetectOptions, detect
from clipfind.search.detect.proposals import iou

log = logging.getLogger(__name__)
COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # AP@[.5:.95]


@dataclass(frozen=True)
class Scored:
    """One detection in an evaluation: image, category, score, box (x0, y0, x1, y1)."""

    image_id: int
    category_id: int
    score: float
    box: tuple[float, float, float, float]


def average_precision(detections: Sequence[Scored], truths: dict[tuple[int, int], list[tuple]],
                      crowd: dict[tuple[int, int], list[tuple]] | None = None,
                      iou_threshold: float = 0.5) -> float:
    """AP of one category: ``truths`` maps ``(image_id, category_id)`` to its boxes.
    Greedy matching by score; a detection on a crowd region is ignored, not counted as a
    false positive (COCO's rule). COCO's 101-point interpolated precision."""
    n_true = sum(len(v) for v in truths.values())
    if n_true == 0:
        return float("nan")
    used = {key: np.zeros(len(v), bool) for key, v in truths.items()}
    tp, fp = [], []
    for det in sorted(detections, key=lambda d: -d.score):
        key = (det.image_id, det.category_id)
        boxes = truths.get(key, [])
        overlaps = iou(np.asarray([det.box]), np.asarray(boxes).reshape(-1, 4))[0] if boxes else []
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        if best >= 0 and overlaps[best] >= iou_threshold and not used[key][best]:
            used[key][best] = True
            tp.append(1)
            fp.append(0)
        elif crowd and crowd.get(key) and iou(np.asarray([det.box]),
                                              np.asarray(crowd[key]))[0].max() >= iou_threshold:
            continue
        else:
            tp.append(0)
            fp.append(1)
    if not tp:
        return 0.0
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = ctp / n_true
    precision = ctp / np.maximum(ctp + cfp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the interpolated envelope
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    values = [precision[i] if i < len(precision) else 0.0 for i in idx]
    return float(np.mean(values))


def evaluate_detection(
    encoder: Encoder,
    instances_json: Path,
    images_dir: Path | None = None,
    limit: int | None = None,
    template: str = "a photo of a {}",
    threshold: float = 0.05,
    max_boxes: int = 20,
    options: DetectOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    detector: Any | None = None,
) -> dict[str, Any]:
    """AP50 and AP@[.5:.95] of :func:`search.detect.detect` on ``encoder`` (or of
    ``detector``, anything with ``detect(image, queries, threshold, max_boxes)``) on a
    COCO-format instances file. Images are looked up in ``images_dir`` (default:
    ``<file's folder>/../<val2017-like name>``, i.e. the folder named after the
    annotation file's split, else the file's folder)."""
    instances_json = Path(instances_json)
    try:
        doc = json.loads(instances_json.read_text())
    except (OSError, ValueError) as exc:
        raise QueryError(f"cannot read instances file {instances_json}: {exc}") from exc
    cats = {int(c["id"]): str(c["name"]) for c in doc.get("categories", [])}
    if not cats or "images" not in doc:
        raise QueryError(f"{instances_json} is not a COCO instances file (needs 'images' and "
                         "'categories')")
    folder = images_dir or _default_images_dir(instances_json)
    truths, crowd = _ground_truth(doc)
    images = doc["images"][:limit] if limit else doc["images"]
    cat_ids = list(cats)
    queries = [template.format(cats[c]) for c in cat_ids]
    found: list[Scored] = []
    started, skipped = time.perf_counter(), []
    for n, info in enumerate(images, start=1):
        try:
            image = load_image(folder / info["file_name"]).image
        except ClipfindError as exc:
            skipped.append(str(exc))
            continue
        dets = (detector.detect(image, queries, threshold, max_boxes) if detector is not None
                else detect(encoder, image, queries, threshold=threshold, max_boxes=max_boxes,
                            options=options))
        for det in dets:
            b = det.box
            found.append(Scored(int(info["id"]), cat_ids[queries.index(det.label)], det.score,
                                (b.xmin, b.ymin, b.xmax, b.ymax)))
        if progress:
            progress(n, len(images))
    seen = {int(i["id"]) for i in images}
    per_cat, per_cat_coco = {}, {}
    for cid in cat_ids:
        cat_truths = {k: v for k, v in truths.items() if k[1] == cid and k[0] in seen}
        mine = [d for d in found if d.category_id == cid]
        aps = [average_precision(mine, cat_truths, crowd, t) for t in COCO_IOUS]
        if not np.isnan(aps[0]):
            per_cat[cats[cid]] = round(aps[0], 4)
            per_cat_coco[cats[cid]] = round(float(np.mean(aps)), 4)
    return {
        "AP50": round(float(np.mean(list(per_cat.values()))), 4) if per_cat else 0.0,
        "AP": round(float(np.mean(list(per_cat_coco.values()))), 4) if per_cat_coco else 0.0,
        "per_category_AP": per_cat_coco,
        "images": len(images) - len(skipped), "skipped": skipped,
        "categories": len(per_cat), "detections": len(found),
        "seconds": round(time.perf_counter() - started, 2), "per_category": per_cat,
    }


def _default_images_dir(instances_json: Path) -> Path:
    stem = instances_json.stem  # instances_val2017 → val2017
    split = stem.split("_", 1)[1] if "_" in stem else stem
    for candidate in (instances_json.parent.parent / split, instances_json.parent / split):
        if candidate.is_dir():
            return candidate
    return instances_json.parent


def _ground_truth(doc: dict[str, Any]) -> tuple[dict, dict]:
    truths: dict[tuple[int, int], list[tuple]] = defaultdict(list)
    crowd: dict[tuple[int, int], list[tuple]] = defaultdict(list)
    for ann in doc.get("annotations", []):
        x, y, w, h = (float(v) for v in ann["bbox"])
        key = (int(ann["image_id"]), int(ann["category_id"]))
        (crowd if ann.get("iscrowd") else truths)[key].append((x, y, x + w, y + h))
    return dict(truths), dict(crowd)


def evaluate_scenes(encoder: Encoder, n: int = 40, seed: int = 0, canvas: tuple[int, int] = (160, 120),
                    options: DetectOptions | None = None,
                    threshold: float | None = None) -> dict[str, float]:
    """The synthetic-shapes checks on ``n`` scenes (one to three shapes; from the second
    on, the first is a shape of the queried kind in another colour):

    * ``found``: share of scenes whose best box for the queried shape has IoU ≥ 0.5
      with it;
    * ``clean``: share of scenes with a distractor where no box for the query has IoU
      ≥ 0.3 with a distractor of another colour;
    * ``absent_clean``: share of scenes where a shape that is not there gets no box.
    """
    from clipfind.training.synthetic import COLOURS, SHAPES, render_scene

    rng = np.random.default_rng(seed)
    colours = list(COLOURS)
    found = clean = with_distractor = absent_clean = 0
    for _ in range(n):
        colour, shape = colours[rng.integers(len(colours))], SHAPES[rng.integers(len(SHAPES))]
        objects = [(colour, shape)]
        count = int(rng.integers(1, 4))
        if count >= 2:
            objects.append((_other(colours, colour, rng), shape))
        if count == 3:
            objects.append((colours[rng.integers(len(colours))], SHAPES[rng.integers(len(SHAPES))]))
        order = rng.permutation(len(objects))
        image, boxes = render_scene([objects[i] for i in order], canvas, rng)
        truth = dict(zip([int(i) for i in order], [b for _, b in boxes], strict=True))
        dets = detect(encoder, image, [f"a {colour} {shape}"], threshold=threshold, options=options)
        if dets and iou(np.asarray([_xyxy(dets[0])]), np.asarray([truth[0]]))[0, 0] >= 0.5:
            found += 1
        others = [truth[i] for i, (c, _) in enumerate(objects) if c != colour]
        if others:
            with_distractor += 1
            hits = iou(np.asarray([_xyxy(d) for d in dets]).reshape(-1, 4), np.asarray(others))
            clean += int(not (hits >= 0.3).any())
        present = set(objects)
        absent = (colour, shape)
        while absent in present:
            absent = (colours[rng.integers(len(colours))], SHAPES[rng.integers(len(SHAPES))])
        gone = detect(encoder, image, [f"a {absent[0]} {absent[1]}"], threshold=threshold,
                      options=options)
        absent_clean += int(not gone)
    return {"scenes": n, "found": found / n, "clean": clean / max(with_distractor, 1),
            "absent_clean": absent_clean / n}


def _other(colours: list[str], colour: str, rng: np.random.Generator) -> str:
    rest = [c for c in colours if c != colour]
    return rest[int(rng.integers(len(rest)))]


def _xyxy(det: Any) -> tuple[float, float, float, float]:
    b = det.box
    return (b.xmin, b.ymin, b.xmax, b.ymax)
