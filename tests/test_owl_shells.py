"""OWL detection through the shells: ``clipfind detect --detector/--example``, ``search
--locate``, ``eval --detection --detector``, ``POST /detect`` with ``detector`` and an
``example`` upload, and the user-facing errors (a missing model offline: one line, exit
3; a bad example picture: the undecodable-image error, exit 5), with the tiny local OWL
models of tests/owl_models.py. The detector itself is checked against transformers in
tests/test_owl.py; here the shells must give exactly what it gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from clipfind.errors import ImageDecodeError, ModelLoadError, QueryError
from clipfind.imageio import load_image
from clipfind.search.detect.owl import load_owl
from tests.owl_models import save_tiny_owl
from tests.test_owl import _scene


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_owl("owlv2", tmp_path_factory.mktemp("owl"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    _scene(200, 90, 1).save(root / "wide.png")
    exif = Image.Exif()
    exif[274] = 6  # shown turned 90° clockwise: 100 x 180
    _scene(180, 100, 2).save(root / "sideways.jpg", quality=95, exif=exif)
    return root


def _rows(dets: list) -> list[tuple]:
    return [(d["label"], d["score"], tuple(d["box"].values())) for d in dets]


def _expected(owl_dir: Path, path: Path, queries: list[str] | None = None,
              example: Path | None = None, label: str = "example", **kw: object) -> list[tuple]:
    """The detector's own answer on the decoded file, rounded to the shells' 0.1 px."""
    detector = load_owl(str(owl_dir))
    image = load_image(path).image
    if example is not None:
        found = detector.detect_example(image, load_image(example).image, label=label, **kw)
    else:
        found = detector.detect(image, queries or [], **kw)
    return [(d.label, d.score, tuple(round(v, 1) for v in d.box.as_dict().values())) for d in found]


def _cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_encoder: object) -> tuple:
    from clipfind.api.cli.app import main

    monkeypatch.setattr("clipfind.api.cli.common.make_encoder", lambda settings, coll: fake_encoder)
    return main, ["--data-dir", str(tmp_path / "data")]


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(home), "CLIPFIND_DATA_DIR": str(home)}
    return subprocess.run([sys.executable, "-m", "clipfind", *args], capture_output=True, text=True,
                          env=env, timeout=240)


def test_cli_detect_text_and_example_equal_the_detector(owl_dir, photos, tmp_path, monkeypatch, capsys,
                                                        fake_encoder):
    main, base = _cli(monkeypatch, tmp_path, fake_encoder)
    path = photos / "sideways.jpg"
    args = ["detect", str(path), "-q", "a red car", "-q", "a dog", "--detector", "owlv2",
            "--owl-model", str(owl_dir), "--threshold", "0.3", "--json", *base]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["width"], doc["height"]) == (100, 180)
    assert len(doc["detections"]) >= 3
    assert _rows(doc["detections"]) == _expected(owl_dir, path, ["a red car", "a dog"], threshold=0.3)

    crop = tmp_path / "crop.png"
    load_image(photos / "wide.png").image.crop((20, 10, 80, 60)).save(crop)
    drawn = tmp_path / "drawn.png"
    assert main(["detect", str(path), "--example", str(crop), "--owl-model", str(owl_dir),
                 "--max", "4", "--draw", str(drawn), "--json", *base]) == 0  # owl_model set: OWL
    doc = json.loads(capsys.readouterr().out)
    assert _rows(doc["detections"]) == _expected(owl_dir, path, example=crop, label="crop.png",
                                                 max_boxes=4)
    assert doc["detections"] and Image.open(drawn).size == (100, 180)


def test_cli_default_detector_from_the_settings(owl_dir, photos, tmp_path, monkeypatch, capsys,
                                                fake_encoder):
    main, base = _cli(monkeypatch, tmp_path, fake_encoder)
    path = photos / "wide.png"
    monkeypatch.setenv("CLIPFIND_OWL_MODEL", str(owl_dir))
    assert main(["detect", str(path), "-q", "a red car", "--json", *base]) == 0
    assert _rows(json.loads(capsys.readouterr().out)["detections"]) == _expected(owl_dir, path, ["a red car"])
    # --detector clip still reads boxes out of the collection's model (the colour fake)
    assert main(["detect", str(path), "-q", "red", "--detector", "clip", "--model", "fake-colour",
                 "--json", *base]) == 0
    assert all(d["score"] >= 0.6 for d in json.loads(capsys.readouterr().out)["detections"])
    monkeypatch.delenv("CLIPFIND_OWL_MODEL")
    # no OWL model configured: the example cannot be looked for with CLIP
    assert main(["detect", str(path), "--example", str(path), *base]) == QueryError.exit_code
    assert main(["detect", str(path), "-q", "x", "--detector", "owlv3", *base]) == QueryError.exit_code


def test_cli_search_locate_by_text_and_by_example(owl_dir, photos, tmp_path, monkeypatch, capsys,
                                                  fake_encoder):
    main, base = _cli(monkeypatch, tmp_path, fake_encoder)
    base = [*base, "--model", "fake-colour"]
    assert main(["index", str(photos), *base]) == 0
    capsys.readouterr()
    owl = ["--detector", "owlv2", "--owl-model", str(owl_dir)]
    assert main(["search", "a red car", "-k", "2", "--locate", "--json", *owl, *base]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 2
    for row in results:
        assert _rows(row["boxes"]) == _expected(owl_dir, Path(row["path"]), ["a red car"], max_boxes=5)
    crop = tmp_path / "crop.png"
    load_image(photos / "wide.png").image.crop((20, 10, 80, 60)).save(crop)
    assert main(["search", "--example", str(crop), "-k", "2", "--locate", "--json", *owl, *base]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert any(row["boxes"] for row in results)
    for row in results:
        assert _rows(row["boxes"]) == _expected(owl_dir, Path(row["path"]), example=crop,
                                                label="crop.png", max_boxes=5)


def test_offline_missing_model_is_one_line_exit_3(photos, tmp_path):
    done = _run("detect", str(photos / "wide.png"), "-q", "a red car", "--detector", "owlv2",
                home=tmp_path)
    assert done.returncode == ModelLoadError.exit_code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[0]] and "Traceback" not in done.stderr
    assert lines[0].startswith("error: Could not load OWL model 'google/owlv2-base-patch16-ensemble': "
                               "it could not be downloaded (no internet access?).")
    assert done.stdout == ""


def test_bad_example_picture_is_the_undecodable_image_error(owl_dir, photos, tmp_path):
    bad = tmp_path / "crop.jpg"
    bad.write_text("not a picture")
    done = _run("detect", str(photos / "wide.png"), "--example", str(bad), "--owl-model", str(owl_dir),
                home=tmp_path)
    assert done.returncode == ImageDecodeError.exit_code, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {bad}: not an image or an unsupported format"]


def test_eval_detection_with_an_owl_detector(owl_dir, tmp_path, monkeypatch, capsys, fake_encoder):
    main, base = _cli(monkeypatch, tmp_path, fake_encoder)
    (tmp_path / "val").mkdir()
    images, anns = [], []
    for i in range(2):
        _scene(120 + 30 * i, 90, i).save(tmp_path / "val" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 120 + 30 * i, "height": 90})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 40, 40], "iscrowd": 0})
    coco = tmp_path / "instances_val.json"
    coco.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "square"}]}))
    assert main(["eval", "--detection", str(coco), "--detector", "owlv2", "--owl-model", str(owl_dir),
                 "--json", *base]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 2 and doc["detections"] > 0
    assert 0.0 <= doc["AP"] <= doc["AP50"] <= 1.0
    assert set(doc["per_category_AP"]) == {"square"}


def test_ap_over_iou_thresholds_is_the_mean_of_ten_aps(tmp_path):
    """A detector that always answers one box at IoU 0.64 with the truth: a hit for IoU
    thresholds 0.50-0.60 (3 of 10), a miss above, so AP@[.5:.95] = 0.3 and AP50 = 1."""
    from clipfind.search.detect.detector import Box, Detection
    from clipfind.training.evaluate_detection import evaluate_detection

    class Fixed:
        def detect(self, image, queries, threshold=None, max_boxes=10):  # type: ignore[no-untyped-def]
            return [Detection(queries[0], 0.9, Box(10, 10, 50, 60))]  # truth: 10,10,50,42

    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                "annotations": [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 32]}],
                                "categories": [{"id": 1, "name": "thing"}]}))
    doc = evaluate_detection(None, coco, tmp_path, detector=Fixed())
    assert doc["AP50"] == 1.0
    assert doc["AP"] == pytest.approx(0.3)
    assert np.isclose(doc["per_category_AP"]["thing"], 0.3)


def test_http_detect_with_a_detector_and_an_example(owl_dir, photos, tmp_path):
    import shutil

    from tests.test_api_support import app_settings, ids_by_name, running_app

    shutil.copytree(photos, tmp_path / "photos")
    (tmp_path / "photos" / "bad.png").write_bytes(b"")  # skipped by the indexer
    settings = app_settings(tmp_path, detector="owlv2", owl_model=str(owl_dir))
    wide = tmp_path / "photos" / "wide.png"
    crop = tmp_path / "crop.png"
    load_image(wide).image.crop((20, 10, 80, 60)).save(crop)
    with running_app(settings) as client:
        ids = ids_by_name(client)
        res = client.post("/detect", json={"item": ids["sideways.jpg"], "queries": ["a red car"]})
        assert res.status_code == 200, res.text
        assert (res.json()["width"], res.json()["height"]) == (100, 180)
        assert _rows(res.json()["detections"]) == _expected(owl_dir, photos / "sideways.jpg",
                                                            ["a red car"])
        files = {"image": ("wide.png", wide.read_bytes()), "example": ("crop.png", crop.read_bytes())}
        res = client.post("/detect", files=files, data={"max_boxes": "3"})
        assert res.status_code == 200, res.text
        want = _expected(owl_dir, wide, example=crop, max_boxes=3)
        assert want and _rows(res.json()["detections"]) == want
        res = client.post("/detect", json={"item": ids["wide.png"], "example_item": ids["wide.png"]})
        assert res.status_code == 200, res.text
        assert {d["label"] for d in res.json()["detections"]} == {f"#{ids['wide.png']}"}
        box = {"item": ids["sideways.jpg"], "example_item": ids["wide.png"], "example_box": [20, 10, 80, 60]}
        res = client.post("/detect", json=box)
        assert res.status_code == 200, res.text
        assert _rows(res.json()["detections"]) == _expected(
            owl_dir, photos / "sideways.jpg", example=crop, label=f"#{ids['wide.png']}")
        res = client.post("/detect", json={**box, "example_box": [20, 10, 80, 900]})
        assert res.status_code == QueryError.http_status and "example_box" in res.text
        # the CLIP detector on request: the collection's model (the colour fake) answers
        res = client.post("/detect", json={"item": ids["wide.png"], "queries": ["red"], "detector": "clip"})
        assert res.status_code == 200, res.text
        assert all(d["score"] >= 0.6 for d in res.json()["detections"])
        files = {"image": ("wide.png", wide.read_bytes()), "example": ("bad.jpg", b"not a picture")}
        res = client.post("/detect", files=files)
        assert res.status_code == ImageDecodeError.http_status
        assert "not an image" in res.json()["detail"] and "Traceback" not in res.text
        for body in ({"item": ids["wide.png"]}, {"item": ids["wide.png"], "queries": ["x"],
                                                 "example_item": ids["wide.png"]}):
            res = client.post("/detect", json=body)
            assert res.status_code == QueryError.http_status, res.text
