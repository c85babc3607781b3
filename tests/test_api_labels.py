"""``/classify``, ``/labels`` and ``/detect`` over HTTP, with the colour encoder's known
answers: the shells add nothing and lose nothing."""

from __future__ import annotations

import pytest

from tests.test_api_support import (
    app_settings,
    half_and_half,
    ids_by_name,
    make_photos,
    png_bytes,
    running_app,
)

LABELS = ["red", "green", "blue", "yellow"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("labels")
    make_photos(tmp / "photos")
    with running_app(app_settings(tmp)) as client:
        yield client, ids_by_name(client), tmp


def test_classify_an_item_and_an_upload(env):  # type: ignore[no-untyped-def]
    client, ids, _ = env
    r = client.post("/classify", json={"labels": LABELS, "item": ids["blue.jpg"]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["scores"][0]["label"] == "blue" and doc["accepted"][0]["label"] == "blue"
    assert doc["scores"] == sorted(doc["scores"], key=lambda s: -s["score"])
    assert abs(sum(s["score"] for s in doc["scores"]) - 1) < 1e-4 and doc["mode"] == "softmax"
    files = {"image": ("g.png", png_bytes((0, 240, 0)), "image/png")}
    r = client.post("/classify", files=files, data={"labels": LABELS, "top": "2"})
    assert r.status_code == 200, r.text
    assert r.json()["scores"][0]["label"] == "green" and len(r.json()["scores"]) == 2
    own = client.post("/classify", json={"labels": LABELS, "item": ids["red.jpg"],
                                         "templates": ["a close-up photo of {}"]})
    assert own.json()["scores"][0]["label"] == "red"


@pytest.mark.parametrize("body, status, why", [
    ({"labels": ["red"]}, 422, "exactly one image"),
    ({"labels": [], "item": 1}, 422, ""),
    ({"labels": ["red"], "item": 424242}, 404, "not in the collection"),
    ({"labels": ["red"], "item": 1, "templates": ["/etc/passwd"]}, 422, "no template set"),
    ({"labels": ["red"], "item": 1, "templates": ["../../../etc/hosts"]}, 422, "no template set"),
    ({"labels": ["red"], "item": 1, "templates": ["no placeholder", "x"]}, 422, "{}"),
    ({"labels": ["red"], "item": 1, "top": 0}, 422, ""),
    ({"labels": ["red"], "item": 1, "surprise": True}, 422, ""),
])
def test_bad_classify_requests(env, body, status, why):  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = client.post("/classify", json=body)
    assert r.status_code == status, r.text
    assert why in str(r.json()["detail"])


def test_label_the_collection_then_browse_and_filter(env):  # type: ignore[no-untyped-def]
    client, ids, _ = env
    r = client.post("/labels/colours", json={"labels": LABELS})
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["scored"] == 7 and run["counts"]["red"] >= 1 and run["name"] == "colours"
    sets = client.get("/labels").json()
    assert [s["name"] for s in sets] == ["colours"]
    one = client.get("/labels/colours").json()
    assert one["counts"] == run["counts"] and one["labels"] == LABELS
    page = client.get("/labels/colours/items", params={"label": "yellow"}).json()
    assert page["results"][0]["name"] == "yellow.jpg" and page["total"] == run["counts"]["yellow"]
    scores = [h["score"] for h in page["results"]]
    assert scores == sorted(scores, reverse=True)
    first = client.get("/labels/colours/items", params={"label": "red", "k": 1}).json()
    if first["total"] > 1:
        second = client.get("/labels/colours/items",
                            params={"label": "red", "k": 1, "offset": first["next_offset"]}).json()
        assert second["results"][0]["id"] != first["results"][0]["id"]
    item = client.get(f"/items/{ids['green.jpg']}").json()
    assert [(lb["set"], lb["label"]) for lb in item["labels"]] == [("colours", "green")]
    filtered = client.get("/search", params={"q": "red", "label": "colours:green"}).json()
    assert [h["name"] for h in filtered["results"]] == ["green.jpg"]


@pytest.mark.parametrize("method, url, body, status", [
    ("GET", "/labels/nope", None, 404),
    ("GET", "/labels/nope/items?label=red", None, 404),
    ("GET", "/labels/colours/items", None, 422),          # label is required
    ("POST", "/labels/a:b", {"labels": ["red"]}, 422),     # ':' separates SET:LABEL
    ("POST", "/labels/x", {"labels": []}, 422),
    ("POST", "/labels/x", {"labels": ["red"], "templates": ["/etc/passwd"]}, 422),
])
def test_bad_label_requests(env, method, url, body, status):  # type: ignore[no-untyped-def]
    client, _, _ = env
    assert client.request(method, url, json=body).status_code == status


def test_detect_finds_the_red_half(env):  # type: ignore[no-untyped-def]
    client, ids, tmp = env
    r = client.post("/detect", json={"queries": ["red"], "item": ids["half.png"]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["width"], doc["height"]) == (160, 80) and doc["detections"]
    best = doc["detections"][0]
    assert best["label"] == "red" and set(best["box"]) == {"xmin", "ymin", "xmax", "ymax"}
    assert (best["box"]["xmin"] + best["box"]["xmax"]) / 2 < 80  # the left half
    upload = half_and_half(tmp / "upload.png", (320, 160)).read_bytes()
    r = client.post("/detect", files={"image": ("u.png", upload, "image/png")},
                    data={"queries": ["blue"], "max_boxes": "3"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["width"], doc["height"]) == (320, 160) and 1 <= len(doc["detections"]) <= 3
    box = doc["detections"][0]["box"]
    assert (box["xmin"] + box["xmax"]) / 2 > 160  # the right half, in the upload's pixels


@pytest.mark.parametrize("body, status", [
    ({"queries": []}, 422), ({"queries": ["red"]}, 422), ({"queries": ["red"], "item": 999}, 404),
    ({"queries": ["red"], "item": 1, "max_boxes": 0}, 422),
    ({"queries": ["red"], "item": 1, "threshold": 3}, 422),
    ({"queries": ["q"] * 100, "item": 1}, 422),
])
def test_bad_detect_requests(env, body, status):  # type: ignore[no-untyped-def]
    client, _, _ = env
    assert client.post("/detect", json=body).status_code == status
