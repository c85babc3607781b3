"""Training data formats: CSV, JSONL, COCO captions, ImageFolder (real files)."""

from __future__ import annotations

import json

import pytest

from clipfind.training.data import DatasetError, Pair, load_pairs
from tests.fakes import solid


@pytest.fixture
def photos(tmp_path):  # type: ignore[no-untyped-def]
    for name, colour in (("r.png", "red"), ("g.jpg", "green"), ("sub/b.png", "blue")):
        solid(tmp_path / "img" / name, colour)
    return tmp_path / "img"


def test_csv_with_relative_paths_and_other_column_names(photos, tmp_path):
    (tmp_path / "pairs.csv").write_text("filepath,title\nimg/r.png,a red one\nimg/sub/b.png,\"blue, too\"\n")
    data = load_pairs(tmp_path / "pairs.csv")
    assert data.pairs == [Pair(photos / "r.png", "a red one"), Pair(photos / "sub/b.png", "blue, too")]
    image, caption = data[1]
    assert image.size == (40, 30) and caption == "blue, too"


def test_csv_without_a_caption_column_says_what_it_needs(tmp_path):
    (tmp_path / "x.csv").write_text("image,label\na.png,red\n")
    with pytest.raises(DatasetError, match="no caption column"):
        load_pairs(tmp_path / "x.csv")


def test_jsonl_with_several_captions_and_an_images_dir(photos, tmp_path):
    lines = [{"image": "r.png", "caption": ["red", "a red square"]}, {"file": "g.jpg", "text": "green"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    data = load_pairs(tmp_path / "pairs.jsonl", images_dir=photos)
    assert [p.caption for p in data.pairs] == ["red", "a red square", "green"]
    assert data.pairs[2].image == photos / "g.jpg"
    (tmp_path / "bad.jsonl").write_text('{"image": "r.png"}\n')
    with pytest.raises(DatasetError, match=r"bad\.jsonl:1"):
        load_pairs(tmp_path / "bad.jsonl")


def test_image_folder_captions_come_from_templates_and_change_by_epoch(tmp_path):
    for i in range(3):
        solid(tmp_path / "set" / "red_car" / f"{i}.png", "red")
        solid(tmp_path / "set" / "blue" / f"{i}.png", "blue")
    solid(tmp_path / "set" / ".hidden" / "x.png", "green")
    templates = ["a photo of a {}.", "a {} again", "{}!"]
    data = load_pairs(tmp_path / "set", templates=templates)
    assert len(data) == 6
    assert {p.caption for p in data.pairs} == {"red car", "blue"}
    by_epoch = []
    for epoch in range(4):
        data.set_epoch(epoch)
        captions = [data.caption(i) for i in range(6)]
        for pair, caption in zip(data.pairs, captions, strict=True):
            assert caption in [t.replace("{}", pair.caption) for t in templates]
        by_epoch.append(captions)
    assert len({tuple(c) for c in by_epoch}) > 1  # reworded between epochs


def test_undecodable_image_is_skipped_not_fatal(tmp_path):
    solid(tmp_path / "ok.png", "red")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "pairs.csv").write_text("image,caption\nbad.png,broken\nok.png,fine\n")
    data = load_pairs(tmp_path / "pairs.csv")
    image, caption = data[0]  # the next decodable pair stands in
    assert caption == "fine" and image.size == (40, 30)


def test_coco_captions_format(tmp_path, photos):
    doc = {"images": [{"id": 7, "file_name": "r.png"}, {"id": 9, "file_name": "g.jpg"}],
           "annotations": [{"image_id": 7, "caption": " A red square. "}, {"image_id": 9, "caption": "Green"},
                           {"image_id": 7, "caption": "red again"}, {"image_id": 99, "caption": "orphan"}]}
    (tmp_path / "captions.json").write_text(json.dumps(doc))
    data = load_pairs(tmp_path / "captions.json", images_dir=photos)
    assert [(p.image.name, p.caption) for p in data.pairs] == [
        ("r.png", "A red square."), ("g.jpg", "Green"), ("r.png", "red again")]
    (tmp_path / "not_coco.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a COCO captions file"):
        load_pairs(tmp_path / "not_coco.json")


def test_coco_mini_captions_load_with_their_images(coco_mini):
    data = load_pairs(coco_mini / "annotations" / "captions_val2017.json")
    doc = json.loads((coco_mini / "annotations" / "captions_val2017.json").read_text())
    assert len(data) == len(doc["annotations"])
    assert all(p.image.is_file() for p in data.pairs)
    assert len({p.image for p in data.pairs}) == len({a["image_id"] for a in doc["annotations"]})
    image, caption = data[0]
    assert min(image.size) > 100 and len(caption) > 10
