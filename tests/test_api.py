"""The HTTP API with the colour encoder: search (GET, JSON, upload), items, images,
thumbnails and info, with answers we can predict."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.pg import db_url
from tests.test_api_support import (
    COLOURS,
    app_settings,
    ids_by_name,
    make_photos,
    png_bytes,
    running_app,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory, request, catalog_backend):  # type: ignore[no-untyped-def]
    """The same answers from a SQLite catalog and a PostgreSQL one (tests/pg.py)."""
    tmp = tmp_path_factory.mktemp("api")
    make_photos(tmp / "photos")
    settings = app_settings(tmp, db_url=db_url(request, catalog_backend))
    with running_app(settings) as client:
        yield client, ids_by_name(client), settings


def names(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [hit["name"] for hit in response.json()["results"]]


def test_health_info_and_docs(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["indexed"] == 7 and info["skipped"] == 1
    assert info["model"] == "fake-colour" and info["index"]["vectors"] == 7
    assert [r["name"] for r in info["roots"]] == ["photos"]
    assert {"classify", "detect"} <= set(info["features"])
    assert "notes.jpg" in info["skipped_files"][0]["path"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/search", "/items/{item_id}/thumbnail", "/index", "/jobs/{job_id}", "/classify",
                 "/labels/{set_name}", "/detect"):
        assert path in paths
    assert "multipart/form-data" in paths["/search"]["post"]["requestBody"]["content"]
    page = client.get("/")
    assert page.status_code == 200 and "clipfind" in page.text


def test_get_search_ranks_the_named_colour_first(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    for colour in COLOURS:
        found = names(client.get("/search", params={"q": f"a {colour} photo", "k": 3}))
        assert found[0] == f"{colour}.jpg"
    hit = client.get("/search", params={"q": "red", "k": 1}).json()["results"][0]
    assert hit["score"] > 0.99 and hit["width"] == 40 and hit["thumbnail"].endswith("/thumbnail")


def test_pages_are_stable_and_next_offset_chains(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    full = names(client.get("/search", params={"q": "red", "k": 7}))
    seen, offset = [], 0
    while offset is not None:
        page = client.get("/search", params={"q": "red", "k": 3, "offset": offset}).json()
        seen += [h["name"] for h in page["results"]]
        offset = page["next_offset"]
    assert seen == full and len(full) == 7


def test_filters_and_negatives_in_the_query_string(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    assert names(client.get("/search", params={"q": "red", "path": "*/nested/*"})) == ["white.png"]
    # yellow minus red leans to green, from `not` and from the query syntax alike
    assert names(client.get("/search", params={"q": "yellow", "not": ["red", "red"]}))[0] == "green.jpg"
    assert names(client.get("/search", params={"q": "yellow - 2:red"}))[0] == "green.jpg"
    assert names(client.get("/search", params={"q": "red", "min_score": 0.9})) == ["red.jpg"]
    assert client.get("/search", params={"q": "red", "after": "2999"}).json()["results"] == []
    assert names(client.get("/search", params={"q": "red", "before": "2999-12", "k": 1})) == ["red.jpg"]


def test_more_like_this_and_json_mixes(env):  # type: ignore[no-untyped-def]
    client, ids, _ = env
    by_item = client.get("/search", params={"item": ids["blue.jpg"], "k": 1}).json()["results"][0]
    assert by_item["id"] == ids["blue.jpg"] and by_item["score"] > 0.999
    assert names(client.post("/search", json={"items": [ids["yellow.jpg"]],
                                              "not_items": [ids["red.jpg"]] * 2}))[0] == "green.jpg"
    mixed = client.post("/search", json={"q": f"#{ids['green.jpg']}", "not": ["green"], "k": 2})
    assert mixed.status_code == 200  # an item minus its own colour: a valid (odd) query
    assert names(client.post("/search", json={"q": "blue", "path": "*.jpg", "k": 1})) == ["blue.jpg"]


def test_search_by_uploaded_example(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    files = {"image": ("probe.png", png_bytes((0, 0, 250)), "image/png")}
    r = client.post("/search", files=files, data={"k": "2", "not": ["green"]})
    assert names(r)[0] == "blue.jpg"
    assert r.json()["query"][-1].endswith("uploaded image")
    # the upload mixes with text: a blue image + "red" finds the red-and-blue image
    r = client.post("/search", files=files, data={"q": "red", "k": 3})
    assert names(r)[0] == "half.png"
    r = client.post("/search", files=files, data={"q": "red", "image_weight": "0.2", "k": 3})
    assert names(r)[0] == "red.jpg"


@pytest.mark.parametrize("params, status", [
    ({}, 422),                                  # empty query
    ({"q": "   "}, 422),
    ({"q": "red", "k": 0}, 422),
    ({"q": "red", "k": 10_000}, 422),
    ({"q": "red", "offset": -1}, 422),
    ({"q": "red", "after": "last tuesday"}, 422),
    ({"q": "#999999"}, 404),                    # no such item
    ({"q": "#99999999999999999999999"}, 404),   # beyond any integer column
    ({"item": 999999}, 404),
    ({"q": "1e999:red"}, 200),                  # not a weight: plain text
    ({"q": "999999999:red"}, 422),              # an absurd weight
    ({"q": "red", "min_score": 2}, 422),
])
def test_bad_search_input_gets_a_clear_4xx(env, params, status):  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = client.get("/search", params=params)
    assert r.status_code == status, r.text
    assert status == 200 or isinstance(r.json()["detail"], str | list)


def test_query_text_is_never_read_as_a_path(env, tmp_path):  # type: ignore[no-untyped-def]
    client, _, _ = env
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes((0, 0, 255)))
    # Read as an image it would match blue.jpg with cosine ~1; as text it is colourless.
    top = client.get("/search", params={"q": str(outside), "k": 1}).json()["results"][0]
    assert top["score"] < 0.9


def test_item_metadata_image_and_thumbnail(env):  # type: ignore[no-untyped-def]
    client, ids, settings = env
    item = client.get(f"/items/{ids['rotated.jpg']}").json()
    assert item["name"] == "rotated.jpg" and (item["width"], item["height"]) == (30, 60)
    original = client.get(item["image"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    assert original.content == Path(item["path"]).read_bytes()
    assert original.headers["x-content-type-options"] == "nosniff"
    thumb = client.get(item["thumbnail"], params={"size": 40})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(thumb.content))
    assert im.size == (30, 60)  # portrait: EXIF rotation applied (and no upscaling)
    assert min(im.getpixel((15, 2))) > 200  # the white band is on top now
    cached = list((settings.cache_dir / "thumbnails").rglob("*.jpg"))
    assert len(cached) == 1
    again = client.get(item["thumbnail"], params={"size": 50})  # same snapped size: cached
    assert again.content == thumb.content
    assert list((settings.cache_dir / "thumbnails").rglob("*.jpg")) == cached
    big = Image.open(io.BytesIO(client.get(f"/items/{ids['half.png']}/thumbnail?size=64").content))
    assert big.size == (64, 32)
    assert client.get(item["thumbnail"], params={"size": 5000}).status_code == 422
