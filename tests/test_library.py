"""The Python API (``clipfind.open`` → :class:`clipfind.library.Clipfind`) end to end
with answers we know: the colour encoder on generated pictures, the shipped reference
model for the module docstring's example, and the shells agreeing with it (the CLI and
the HTTP app give the same boxes for one large picture; multipart labels split)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipfind
from clipfind.errors import NotFoundError, QueryError
from clipfind.search.detect.proposals import iou
from tests.fakes import ColourEncoder, solid

REPO = Path(__file__).resolve().parents[1]
RED_BOX = (200, 40, 262, 101)
BLUE_BOX = (31, 118, 92, 181)


@pytest.fixture(autouse=True)
def _tight_crops_for_the_colour_fake(monkeypatch):  # type: ignore[no-untyped-def]
    """As in test_detect.py: the colour fake scores a crop by its mean colour, so crops
    get a 10 % margin and no relative margin (real models use the defaults)."""
    from clipfind.search.detect import detector
    from clipfind.search.detect.detector import DetectOptions

    monkeypatch.setattr(detector, "DEFAULT_OPTIONS", DetectOptions(context=0.1, relative_margin=None))


def _scene(size: tuple[int, int] = (317, 203), scale: float = 1.0) -> Image.Image:
    img = Image.new("RGB", size, (128, 128, 128))
    img.paste((255, 0, 0), tuple(round(v * scale) for v in RED_BOX))
    img.paste((0, 0, 255), tuple(round(v * scale) for v in BLUE_BOX))
    return img


def _box(d: object) -> np.ndarray:
    b = d.box  # type: ignore[attr-defined]
    return np.array([[b.xmin, b.ymin, b.xmax, b.ymax]], np.float32)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for colour in ("red", "green", "blue", "yellow"):
        solid(folder / f"{colour}.jpg", colour)
    (folder / "notes.jpg").write_text("not an image")
    _scene().save(folder / "scene.png")
    return folder


@pytest.fixture
def cf(tmp_path: Path):  # type: ignore[no-untyped-def]
    with clipfind.open(collection="lib", data_dir=tmp_path / "data", encoder=ColourEncoder()) as c:
        yield c


def test_import_clipfind_loads_no_torch_and_exports_the_surface():
    code = ("import sys, clipfind; clipfind.open; clipfind.Clipfind; "
            "print(sorted(m for m in ('torch', 'open_clip', 'faiss', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout
    assert out.strip() == "[]"
    for name in clipfind.__all__:
        assert getattr(clipfind, name) is not None
    assert clipfind.SearchPage.__dataclass_params__.frozen  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        clipfind.no_such_name  # noqa: B018


def test_index_search_info_forget(cf, photos):  # type: ignore[no-untyped-def]
    summary = cf.index(photos)
    assert isinstance(summary, clipfind.IndexSummary)
    assert (summary.added, len(summary.skipped)) == (5, 1)
    assert "notes.jpg" in summary.skipped[0][0]
    page = cf.search("red", k=2)
    assert isinstance(page, clipfind.SearchPage) and isinstance(page.hits[0], clipfind.Hit)
    assert Path(page.hits[0].path).name == "red.jpg" and len(page.hits) == 2
    assert Path(cf.search(images=[str(photos / "blue.jpg")], k=1).hits[0].path).name == "blue.jpg"
    assert Path(cf.search(f"#{page.hits[0].id}", k=1).hits[0].path).name == "red.jpg"
    assert [Path(h.path).name for h in cf.search("red", path="*/yellow.jpg").hits] == ["yellow.jpg"]
    info = cf.info()
    assert isinstance(info, clipfind.CollectionInfo)
    assert (info.indexed, info.skipped, info.model, info.dim) == (5, 1, "fake-colour", 8)
    assert info.as_dict()["index"]["vectors"] == 5
    assert cf.index(photos).encoded == 0  # nothing new: nothing encoded
    assert cf.forget(photos / "green.jpg") == 1
    assert cf.info().indexed == 4
    with pytest.raises(QueryError):
        cf.search("")
    with pytest.raises(QueryError):
        cf.search("red", k=0)


def test_classify_a_file_an_item_a_picture_and_bytes(cf, photos):  # type: ignore[no-untyped-def]
    cf.index(photos)
    labels = ["red", "green", "blue", "yellow"]
    by_file = cf.classify(photos / "blue.jpg", labels)
    assert isinstance(by_file, clipfind.Classification)
    assert isinstance(by_file.scores[0], clipfind.LabelScore)
    assert by_file.scores[0].label == "blue" and by_file.accepted[0].label == "blue"
    assert abs(sum(s.score for s in by_file.scores) - 1) < 1e-4
    green = cf.search("green", k=1).hits[0].id
    for ref in (green, f"#{green}", f"id:{green}"):
        assert cf.classify(ref, labels).scores[0].label == "green"
    picture = Image.new("RGB", (20, 20), (250, 250, 0))
    assert cf.classify(picture, "red, green,yellow").scores[0].label == "yellow"
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(buf, "PNG")
    top = cf.classify(buf.getvalue(), labels, top=2)
    assert top.scores[0].label == "red" and len(top.scores) == 2
    with pytest.raises(NotFoundError):
        cf.classify(photos / "missing.jpg", labels)
    with pytest.raises(NotFoundError):
        cf.classify("#424242", labels)
    with pytest.raises(QueryError):
        cf.classify("#abc", labels)
    with pytest.raises(QueryError):
        cf.classify(photos / "red.jpg", " , ")


def test_label_sets_and_the_label_filter(cf, photos):  # type: ignore[no-untyped-def]
    cf.index(photos)
    run = cf.label("colours", ["red", "green", "blue", "yellow"], background=())
    assert isinstance(run, clipfind.LabelRunSummary)
    assert run.counts["red"] >= 1 and run.counts["green"] == 1 and run.scored == 5
    names = [Path(h.path).name for h in cf.search("red", label="colours:green").hits]
    assert names == ["green.jpg"]
    assert [s.name for s in cf.label_sets()] == ["colours"]
    assert cf.label_set("colours").counts == run.counts
    out = io.StringIO()
    assert cf.export_label_set("colours", "csv", out) == run.labelled
    cf.delete_label_set("colours")
    with pytest.raises(NotFoundError):
        cf.label_set("colours")


def test_texts_index_and_search(cf, photos):  # type: ignore[no-untyped-def]
    cf.index(photos)
    summary = cf.index_texts(["a red thing", "a blue thing", ("k1", "a yellow thing")])
    assert isinstance(summary, clipfind.TextIndexSummary) and summary.added == 3
    hits = cf.search_texts(images=[str(photos / "yellow.jpg")], k=1)
    assert hits[0].text == "a yellow thing" and hits[0].key == "k1"


def test_detect_and_locate_agree(cf, photos):  # type: ignore[no-untyped-def]
    found = cf.detect(photos / "scene.png", ["red", "blue"])
    assert isinstance(found, clipfind.DetectResult) and (found.width, found.height) == (317, 203)
    red = next(d for d in found.detections if d.label == "red")
    blue = next(d for d in found.detections if d.label == "blue")
    assert iou(_box(red), np.array([RED_BOX]))[0, 0] >= 0.5
    assert iou(_box(blue), np.array([BLUE_BOX]))[0, 0] >= 0.5
    assert cf.detect(_scene(), "red").detections[0] == red  # a PIL picture: same boxes
    assert cf.detect(photos / "scene.png", "green").detections == []
    cf.index(photos)
    page = cf.search("red", path="*/scene.png", k=1)
    located = cf.locate(page, ["red", "blue"], max_boxes=10)
    assert located[page.hits[0].id] == found.detections
    with pytest.raises(QueryError):
        cf.detect(photos / "scene.png", [" "])


def test_a_large_picture_is_detected_at_1024_px_with_boxes_in_its_own_pixels(cf, tmp_path):  # type: ignore[no-untyped-def]
    big = tmp_path / "big.jpg"
    _scene((2536, 1624), scale=8).save(big, quality=95)
    found = cf.detect(big, ["red"])
    assert (found.width, found.height) == (2536, 1624)
    want = np.array([[v * 8 for v in RED_BOX]])
    assert iou(_box(found.detections[0]), want)[0, 0] >= 0.5
    assert found.detections[0].box.xmax > 1024  # scaled back, not the working size


def test_the_cli_and_the_http_app_give_the_same_boxes_for_a_large_picture(
        tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    from clipfind.api.cli.app import main
    from tests.test_api_support import app_settings, running_app

    encoder = ColourEncoder()
    big = tmp_path / "photos" / "big.jpg"
    big.parent.mkdir()
    _scene((2536, 1624), scale=8).save(big, quality=95)
    monkeypatch.setattr("clipfind.api.cli.common.make_encoder", lambda s, c: encoder)
    data = ["--data-dir", str(tmp_path / "data"), "--model", "fake-colour"]
    assert main(["detect", str(big), "-q", "red", "-q", "blue", "--json", *data]) == 0
    cli = json.loads(capsys.readouterr().out)
    with running_app(app_settings(tmp_path / "http"), encoder, index=False) as client:
        files = {"image": ("big.jpg", big.read_bytes(), "image/jpeg")}
        r = client.post("/detect", files=files, data={"queries": ["red", "blue"]})
    assert r.status_code == 200, r.text
    http = r.json()
    assert (http["width"], http["height"]) == (cli["width"], cli["height"]) == (2536, 1624)
    assert http["detections"] == cli["detections"] and cli["detections"]
    assert main(["index", str(big.parent), *data]) == 0
    capsys.readouterr()
    assert main(["search", "red + blue", "--locate", "--json", "-k", "1", *data]) == 0
    located = json.loads(capsys.readouterr().out)["results"][0]["boxes"]
    assert located == cli["detections"][:5]


def test_multipart_labels_split_on_commas_like_the_cli(tmp_path):  # type: ignore[no-untyped-def]
    from tests.test_api_support import app_settings, ids_by_name, make_photos, png_bytes, running_app

    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path)) as client:
        files = {"image": ("b.png", png_bytes((0, 0, 250)), "image/png")}
        r = client.post("/classify", files=files, data={"labels": "red,green, blue"})
        assert r.status_code == 200, r.text
        assert r.json()["scores"][0]["label"] == "blue"
        assert sorted(s["label"] for s in r.json()["scores"]) == ["blue", "green", "red"]
        # JSON lists are taken as given: there a label may hold a comma
        item = ids_by_name(client)["blue.jpg"]
        r = client.post("/classify", json={"labels": ["red, dark", "blue"], "item": item})
        assert r.status_code == 200, r.text
        assert [s["label"] for s in r.json()["scores"]] == ["blue", "red, dark"]


def test_encoders_satisfy_the_protocol(tiny_checkpoint):  # type: ignore[no-untyped-def]
    from clipfind.encoder import ClipEncoder
    from clipfind.encoding import Encoder

    assert isinstance(ColourEncoder(), Encoder)
    settings = clipfind.Settings(device="cpu", batch_size=7, text_precision="fp32",
                                 data_dir=Path("/nonexistent"))
    enc = ClipEncoder.from_settings(settings, f"local-dir:{tiny_checkpoint}")
    assert (enc.spec, enc.batch_size, enc.requested_text_precision, enc.requested_device) == (
        f"local-dir:{tiny_checkpoint}", 7, "fp32", "cpu")
    assert isinstance(enc, Encoder)
    assert ClipEncoder.from_settings(settings.model_copy(update={"model": "m/x"})).spec == "m/x"


def test_the_module_docstring_example_runs(tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    import clipfind.library as library

    body = (library.__doc__ or "").split("::\n", 1)[1]
    code = "\n".join(line[4:] for line in body.split("\nResults are")[0].splitlines())
    monkeypatch.setattr("tempfile.mkdtemp", lambda: str(tmp_path))
    exec(compile(code, "clipfind.library docstring", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "3" and lines[-1] == "3"
    assert lines[1].startswith("['red.png'") and lines[2] == "blue"


def test_the_demo_builds_its_encoder_from_the_settings_like_every_shell(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """It used to ignore CLIPFIND_BATCH_SIZE and CLIPFIND_TEXT_PRECISION."""
    import clipfind.api.demo as demo

    seen = []

    def capture(ctx):  # type: ignore[no-untyped-def]
        seen.append(ctx)
        return demo.DemoSection("captured", [])

    monkeypatch.setattr(demo, "STEPS", [capture])
    monkeypatch.setenv("CLIPFIND_BATCH_SIZE", "3")
    monkeypatch.setenv("CLIPFIND_TEXT_PRECISION", "fp32")
    report = demo.run_demo(tmp_path / "data", k=2, count=12)
    assert report.indexed == 12 and seen
    encoder = seen[0].encoder
    assert (encoder.batch_size, encoder.requested_text_precision) == (3, "fp32")
    assert encoder.text_precision == "fp32"
    assert seen[0].clip.encoder is encoder


def test_open_takes_settings_and_overrides_them(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CLIPFIND_BATCH_SIZE", "9")
    base = clipfind.Settings(data_dir=tmp_path / "data", batch_size=5)
    with clipfind.open(settings=base, collection="other", device="cpu") as c:
        assert (c.settings.collection, c.settings.batch_size, c.settings.device) == ("other", 5, "cpu")
        assert c.settings.data_dir == tmp_path / "data"
    with clipfind.open("named", data_dir=tmp_path / "d2") as c:
        assert (c.settings.collection, c.settings.batch_size) == ("named", 9)  # env, then defaults
    with pytest.raises(clipfind.errors.QueryError, match="collection name 'no/slashes'"):
        clipfind.open("no/slashes", data_dir=tmp_path)
