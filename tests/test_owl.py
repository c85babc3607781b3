"""OWL-ViT / OWLv2 detection (search/detect/owl.py) against ``transformers``' own code.

The models are tiny and random (tests/owl_models.py: ``OwlViTConfig``/``Owlv2Config``
with 2-layer, 32-wide towers on a 96 px input, saved with ``save_pretrained``; the
processor is built offline from open_clip's copy of the CLIP BPE vocabulary, as that
module's docstring says) and go through clipfind's real loading path (``load_owl`` on
the folder).

Fidelity, for a square, a wide, a tall and an EXIF-rotated picture:

* text queries: clipfind's boxes and scores equal those of ``pipeline(
  "zero-shot-object-detection")`` (which runs ``post_process_object_detection`` once per
  query) on the same file. Tolerances: scores 1e-5 absolute (clipfind runs the queries
  as one padded batch, the pipeline one unpadded query at a time); boxes 0.02 px against
  the post-processed float boxes (clipfind rounds to 0.01 px), 1 px against the
  pipeline's integer boxes. transformers leaves boxes that reach past the picture
  (OWLv2's padding) as they are; clipfind clips them to the picture and drops those
  with no area left, so the reference is clipped the same way.
* by example: the same boxes as ``image_guided_detection`` +
  ``post_process_image_guided_detection``; that method reports a relative "alpha"
  (best box = 1) where clipfind reports the sigmoid score, so the alphas are recomputed
  from clipfind's scores and compared (1e-5).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from clipfind.errors import ModelLoadError
from clipfind.imageio import load_image
from clipfind.search.detect.owl import OwlDetector, OwlOptions, load_owl
from tests.owl_models import save_tiny_owl

KINDS = ("owlv2", "owlvit")
LABELS = ["a red car", "a dog", "a person on a bicycle"]
NO_SUPPRESSION = OwlOptions(nms_iou=1.0, nms_contained=None)
THRESHOLD = 0.35


@pytest.fixture(scope="session")
def owl_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("owl")
    return {kind: save_tiny_owl(kind, root) for kind in KINDS}


def _scene(width: int, height: int, seed: int) -> Image.Image:
    """Coloured blocks on a gradient: enough structure for the towers to vary."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1),
                    np.full_like(x, 90)], -1).astype(np.uint8)
    for _ in range(4):
        x0, y0 = rng.integers(0, width - 10), rng.integers(0, height - 10)
        h, w = rng.integers(8, height // 2), rng.integers(8, width // 2)
        arr[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
    return Image.fromarray(arr)


@pytest.fixture(scope="session")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("owl-pictures")
    out = {}
    for name, (w, h) in {"square": (120, 120), "wide": (200, 90), "tall": (70, 160)}.items():
        out[name] = root / f"{name}.png"
        _scene(w, h, len(out)).save(out[name])
    # stored 180x100, shown 100x180: EXIF orientation 6 (turn 90° clockwise to view)
    exif = Image.Exif()
    exif[274] = 6
    out["exif"] = root / "exif.jpg"
    _scene(180, 100, 9).save(out["exif"], quality=95, exif=exif)
    return out


def _clip_ref(box: list[float], w: int, h: int) -> tuple[float, ...]:
    x0, y0, x1, y1 = box
    return (min(max(x0, 0), w), min(max(y0, 0), h), min(max(x1, 0), w), min(max(y1, 0), h))


@functools.cache
def _hf(folder: Path) -> tuple:
    """transformers' own processor and model for ``folder`` (loaded once per session)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    return (AutoProcessor.from_pretrained(folder),
            AutoModelForZeroShotObjectDetection.from_pretrained(folder).eval())


@functools.cache
def _ours(folder: Path) -> OwlDetector:
    return load_owl(str(folder))


def _reference(folder: Path, path: Path, labels: list[str], threshold: float) -> list[tuple]:
    """transformers alone: each query through processor, model and
    ``post_process_object_detection`` (what the pipeline does), boxes in the file's pixels."""
    import torch
    from transformers.image_utils import load_image as hf_load

    processor, model = _hf(folder)
    image = hf_load(str(path))
    out = []
    for label in labels:
        inputs = processor(text=[label], images=image, return_tensors="pt")
        with torch.inference_mode():
            raw = model(**inputs)
        res = processor.image_processor.post_process_object_detection(
            raw, threshold=threshold, target_sizes=[(image.height, image.width)])[0]
        for score, box in zip(res["scores"].tolist(), res["boxes"].tolist(), strict=True):
            b = _clip_ref(box, image.width, image.height)
            if (b[2] - b[0]) * (b[3] - b[1]) > 0:
                out.append((label, score, b))
    return sorted(out, key=lambda r: -r[1])


def _as_rows(dets: list) -> list[tuple]:
    return [(d.label, d.score, (d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax)) for d in dets]


def _assert_same(ours: list[tuple], ref: list[tuple], box_tol: float) -> None:
    assert len(ours) == len(ref), (len(ours), len(ref))
    left = list(ref)
    for label, score, box in ours:  # each of ours matches one reference row
        match = [r for r in left if r[0] == label and abs(r[1] - score) < 1e-5
                 and np.allclose(r[2], box, atol=box_tol)]
        assert match, (label, score, box)
        left.remove(match[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("picture", ["square", "wide", "tall", "exif"])
def test_text_detection_equals_transformers(owl_dirs: dict[str, Path], pictures: dict[str, Path],
                                            kind: str, picture: str) -> None:
    folder, path = owl_dirs[kind], pictures[picture]
    image = load_image(path).image
    found = _ours(folder).detect(image, LABELS, threshold=THRESHOLD, max_boxes=1000,
                                         options=NO_SUPPRESSION)
    ref = _reference(folder, path, LABELS, THRESHOLD)
    assert len(ref) >= 5, "the scene should give the tiny model boxes above the threshold"
    assert {r[0] for r in ref} == set(LABELS)
    _assert_same(_as_rows(found), ref, box_tol=0.02)
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)  # best first


@pytest.mark.parametrize("kind", KINDS)
def test_pipeline_agrees(owl_dirs: dict[str, Path], pictures: dict[str, Path], kind: str) -> None:
    """The public pipeline itself, on the EXIF-rotated file (it turns it, as clipfind)."""
    from transformers import pipeline

    folder, path = owl_dirs[kind], pictures["exif"]
    image = load_image(path).image
    assert image.size == (100, 180)
    found = _ours(folder).detect(image, LABELS, threshold=THRESHOLD, max_boxes=1000,
                                         options=NO_SUPPRESSION)
    pipe = pipeline("zero-shot-object-detection", model=str(folder))
    rows = []
    for r in pipe(str(path), candidate_labels=LABELS, threshold=THRESHOLD):
        b = r["box"]
        box = _clip_ref([b["xmin"], b["ymin"], b["xmax"], b["ymax"]], *image.size)
        rows.append((r["label"], r["score"], box))
    ours = _as_rows(found)
    assert len(ours) >= 5
    for label, score, box in ours:
        assert any(r[0] == label and abs(r[1] - score) < 1e-5 and np.allclose(r[2], box, atol=1.0)
                   for r in rows), (label, score, box)
    for label, score, box in rows:  # pipeline boxes clipped to nothing (to 1 px) are not ours
        thin = min(box[2] - box[0], box[3] - box[1]) <= 1
        assert thin or any(o[0] == label and abs(o[1] - score) < 1e-5 for o in ours), (label, score)


def test_missing_model_offline_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(ModelLoadError) as err:
        load_owl("google/owlv2-base-patch16-ensemble")
    text = str(err.value)
    assert err.value.exit_code == 3
    assert "\n" not in text
    assert text.startswith("Could not load OWL model 'google/owlv2-base-patch16-ensemble': "
                           "it could not be downloaded (no internet access?)")
    assert "save_pretrained" in text


def test_folder_that_is_not_an_owl_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        load_owl(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="is a bert model, not OWL-ViT or OWLv2"):
        load_owl(f"local-dir:{tmp_path}")


def test_family_must_match(owl_dirs: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match="is an owlvit model but the detector asked for is owlv2"):
        load_owl(str(owl_dirs["owlvit"]), kind="owlv2")


def _guided_reference(folder: Path, path: Path, example: Path,
                      threshold: float) -> tuple[list[tuple], float]:
    """transformers alone: ``image_guided_detection`` + ``post_process_image_guided_detection``
    (boxes in the file's pixels, clipped as clipfind does; scores are its alphas), and the
    best box's sigmoid score, which the alphas are relative to (it may lie in OWLv2's
    padding, outside the picture)."""
    import torch
    from transformers.image_utils import load_image as hf_load

    processor, model = _hf(folder)
    image, query = hf_load(str(path)), hf_load(str(example))
    inputs = processor(images=image, query_images=query, return_tensors="pt")
    with torch.inference_mode():
        raw = model.image_guided_detection(**inputs)
    res = processor.post_process_image_guided_detection(
        raw, threshold=threshold, nms_threshold=0.3,
        target_sizes=torch.tensor([[image.height, image.width]]))[0]
    out = []
    for alpha, box in zip(res["scores"].tolist(), res["boxes"].tolist(), strict=True):
        b = _clip_ref(box, image.width, image.height)
        if (b[2] - b[0]) * (b[3] - b[1]) > 0:
            out.append(("example", alpha, b))
    return out, float(torch.sigmoid(raw.logits.max()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("picture", ["wide", "exif"])
def test_detection_by_example_equals_transformers(owl_dirs: dict[str, Path], pictures: dict[str, Path],
                                                  tmp_path: Path, kind: str, picture: str) -> None:
    folder, path = owl_dirs[kind], pictures[picture]
    image = load_image(path).image
    example = tmp_path / "crop.png"
    image.crop((10, 10, 60, 70)).save(example)
    found = _ours(folder).detect_example(image, load_image(example).image, threshold=0.2,
                                         max_boxes=1000, options=NO_SUPPRESSION)
    ref, best = _guided_reference(folder, path, example, threshold=0.2)
    assert len(ref) >= 3
    # clipfind reports the sigmoid score; transformers its alpha relative to the best box
    alphas = [("example", min(max((d.score - 0.1 * (best + 1e-6)) / (0.9 * (best + 1e-6)), 0.0), 1.0),
               (d.box.xmin, d.box.ymin, d.box.xmax, d.box.ymax)) for d in found]
    _assert_same(alphas, ref, box_tol=0.02)


def _reference_nms(rows: list[tuple], iou_max: float, contained_max: float) -> list[tuple]:
    """Greedy per-label suppression written from the rule (independent of clipfind's)."""
    def inter(a: tuple, b: tuple) -> float:
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    def area(a: tuple) -> float:
        return (a[2] - a[0]) * (a[3] - a[1])

    kept: list[tuple] = []
    for row in sorted(rows, key=lambda r: -r[1]):
        rivals = [k for k in kept if k[0] == row[0]]
        if all(inter(row[2], k[2]) / (area(row[2]) + area(k[2]) - inter(row[2], k[2])) <= iou_max
               and inter(row[2], k[2]) / min(area(row[2]), area(k[2])) <= contained_max for k in rivals):
            kept.append(row)
    return kept


@pytest.mark.parametrize("kind", KINDS)
def test_default_rules_suppress_per_label_and_cut_at_max(owl_dirs: dict[str, Path],
                                                         pictures: dict[str, Path], kind: str) -> None:
    from clipfind.search.detect.detector import NMS_CONTAINED, NMS_IOU

    folder, path = owl_dirs[kind], pictures["tall"]
    image = load_image(path).image
    ref = _reference_nms(_reference(folder, path, LABELS, 0.2), NMS_IOU, NMS_CONTAINED)
    every = _ours(folder).detect(image, LABELS, threshold=0.2, max_boxes=1000)
    _assert_same(_as_rows(every), ref, box_tol=0.02)
    assert len(every) < len(_reference(folder, path, LABELS, 0.2))  # something was suppressed
    top = _ours(folder).detect(image, LABELS, threshold=0.2, max_boxes=3)
    assert top == every[:3]


def test_one_image_pass_and_one_text_batch_for_all_queries(owl_dirs: dict[str, Path],
                                                           pictures: dict[str, Path]) -> None:
    detector = load_owl(str(owl_dirs["owlv2"]))
    calls = {"image": 0, "texts": []}
    image_embedder, text_features = detector.model.image_embedder, detector._base.get_text_features

    def count_image(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["image"] += 1
        return image_embedder(*args, **kwargs)

    def count_texts(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["texts"].append(len(kwargs["input_ids"]))
        return text_features(*args, **kwargs)

    detector.model.image_embedder, detector._base.get_text_features = count_image, count_texts
    image = load_image(pictures["wide"]).image
    detector.detect(image, LABELS, threshold=0.2)
    assert calls == {"image": 1, "texts": [3]}
    detector.detect(image, [*LABELS, "a cat"], threshold=0.2)  # known texts come from the cache
    assert calls == {"image": 2, "texts": [3, 1]}
