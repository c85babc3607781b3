"""What a hostile or careless client can try: path traversal, huge uploads,
decompression bombs, wrong content types, missing or wrong API keys, arbitrary roots;
and that an unexpected failure is a generic 500, never a stack trace."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes import ColourEncoder
from tests.test_api_support import (
    app_settings,
    bomb_png,
    ids_by_name,
    make_photos,
    png_bytes,
    running_app,
)

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def env(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("sec")
    make_photos(tmp / "photos")
    settings = app_settings(tmp, max_upload_bytes=40_000, max_pixels=1_000_000)
    with running_app(settings) as client:
        yield client, ids_by_name(client), tmp


@pytest.mark.parametrize("url", [
    "/items/..%2F..%2F..%2Fetc%2Fpasswd/image",
    "/items/%2e%2e/image",
    "/items/..%2fpyproject.toml/thumbnail",
    "/items/-1/image",
    "/items/1abc/image",
    "/items/99999/image",
    "/items/99999999999999999999999999/image",
    "/items/%2Fetc%2Fpasswd",
    "/static/..%2F..%2F..%2Fpyproject.toml",
    "/static/%2e%2e/%2e%2e/http/app.py",
    "/etc/passwd",
])
def test_path_traversal_gets_404(env, url):  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code, r.text[:200])
    assert b"root:" not in r.content and b"[project]" not in r.content


def test_only_indexed_files_are_served(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    info = client.get("/info").json()
    skipped_id = info["skipped_files"][0]["id"]  # notes.jpg, a text file: never served
    for suffix in ("", "/image", "/thumbnail"):
        assert client.get(f"/items/{skipped_id}{suffix}").status_code == 404


def test_a_file_gone_from_disk_is_404(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path)) as client:
        ids = ids_by_name(client)
        (tmp_path / "photos" / "red.jpg").unlink()
        for suffix in ("/image", "/thumbnail"):
            r = client.get(f"/items/{ids['red.jpg']}{suffix}")
            assert r.status_code == 404 and "re-index" in r.json()["detail"]


@pytest.mark.parametrize("endpoint, fields", [
    ("/search", {}), ("/classify", {"labels": ["red"]}), ("/detect", {"queries": ["red"]}),
])
def test_oversized_upload_is_413(env, endpoint, fields):  # type: ignore[no-untyped-def]
    client, _, _ = env
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(noise).save(buf, "PNG")  # ~120 KB, over the 40 KB cap
    r = client.post(endpoint, files={"image": ("big.png", buf.getvalue(), "image/png")}, data=fields)
    assert r.status_code == 413 and "40,000-byte limit" in r.json()["detail"]
    # Far over the cap: refused from Content-Length, before the body is read.
    r = client.post(endpoint, files={"image": ("huge.bin", b"\0" * 3_000_000, "image/png")})
    assert r.status_code == 413


def test_decompression_bomb_is_refused_before_decoding(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    bomb = bomb_png(5000)  # 25 megapixels in ~3 KB; the cap here is 1 megapixel
    assert len(bomb) < 40_000
    for endpoint, fields in [("/search", {}), ("/classify", {"labels": ["red"]}),
                             ("/detect", {"queries": ["red"]})]:
        r = client.post(endpoint, files={"image": ("bomb.png", bomb, "image/png")}, data=fields)
        assert r.status_code == 422, (endpoint, r.text)
        assert "exceeds the 1,000,000-pixel cap" in r.json()["detail"]


@pytest.mark.parametrize("payload, why", [
    (b"this is not an image", "not an image"),
    (png_bytes((255, 0, 0))[:60], "corrupt or truncated"),
    (b"", "empty"),
])
def test_bad_upload_is_422_with_a_reason(env, payload, why):  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = client.post("/search", files={"image": ("x.jpg", payload, "image/jpeg")})
    assert r.status_code == 422 and why in r.json()["detail"]
    assert "Traceback" not in r.text


@pytest.mark.parametrize("endpoint", ["/search", "/classify", "/detect"])
def test_wrong_content_type_is_415(env, endpoint):  # type: ignore[no-untyped-def]
    client, _, _ = env
    for ctype, body in [("text/plain", b"q=red"), ("application/xml", b"<q>red</q>"), (None, b"red")]:
        headers = {"content-type": ctype} if ctype else {}
        r = client.post(endpoint, content=body, headers=headers)
        assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = client.post(endpoint, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post(endpoint, data={"image": "not a file", "labels": "red", "queries": "red"})
    assert r.status_code in (415, 422)  # urlencoded form: not a supported body


def test_a_text_field_named_image_is_refused(env):  # type: ignore[no-untyped-def]
    client, _, _ = env
    r = client.post("/search", files={"q": (None, "red"), "image": (None, "/etc/passwd")})
    assert r.status_code == 422 and "file part" in r.json()["detail"]


def test_api_key_guards_every_endpoint_but_health(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path, api_key=KEY)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200  # the page itself holds no data
        guarded = [("GET", "/info"), ("GET", "/search?q=red"), ("POST", "/search"),
                   ("GET", "/items/1"), ("GET", "/items/1/image"), ("GET", "/items/1/thumbnail"),
                   ("POST", "/index"), ("GET", "/jobs"), ("GET", "/jobs/x"), ("GET", "/roots"),
                   ("POST", "/classify"), ("GET", "/labels"), ("GET", "/labels/x"),
                   ("POST", "/labels/x"), ("POST", "/detect")]
        for method, url in guarded:
            for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"},
                            {"Authorization": f"Basic {KEY}"}, {"X-API-Key": ""}):
                r = client.request(method, url, headers=headers, json={})
                assert r.status_code == 401, (method, url, headers, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
        assert client.get("/info", headers={"X-API-Key": KEY}).status_code == 200
        r = client.get("/search?q=red", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and r.json()["results"][0]["name"] == "red.jpg"
        assert client.get("/items/1/thumbnail", headers={"X-API-Key": KEY}).status_code == 200


def test_clients_name_configured_roots_never_paths(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    (tmp_path / "private").mkdir()
    with running_app(app_settings(tmp_path), index=False) as client:
        for body in ({"root": str(tmp_path / "private")}, {"root": "/"}, {"root": "../photos"}):
            r = client.post("/index", json=body)
            assert r.status_code == 404 and "no configured root" in r.json()["detail"]
        assert client.post("/index", json={"path": str(tmp_path / "private")}).status_code == 422
        assert client.get("/info").json()["indexed"] == 0
    with running_app(app_settings(tmp_path, roots=[]), index=False) as client:
        r = client.post("/index", json={})
        assert r.status_code == 422 and "--root" in r.json()["detail"]


def test_cors_is_off_unless_configured(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
    with running_app(app_settings(tmp_path), index=False) as client:
        r = client.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        assert "access-control-allow-origin" not in client.options("/search", headers=preflight).headers
    settings = app_settings(tmp_path, cors_origins=["http://photos.example"])
    with running_app(settings, index=False) as client:
        r = client.get("/health", headers={"Origin": "http://photos.example"})
        assert r.headers["access-control-allow-origin"] == "http://photos.example"
        r = client.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers


class ExplodingEncoder(ColourEncoder):
    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        if "explode" in texts:
            raise RuntimeError("secret internals /home/user/.ssh")
        return super().encode_texts(texts)


def test_unexpected_errors_are_a_generic_500(tmp_path, caplog):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path), ExplodingEncoder()) as client:
        r = client.get("/search", params={"q": "explode"})
        assert r.status_code == 500
        assert r.json() == {"detail": "internal server error"}
        assert "secret" not in r.text and "Traceback" not in r.text
        assert client.get("/search", params={"q": "red"}).status_code == 200  # still serving
    assert "secret internals" in caplog.text  # logged for the operator, with its trace


def test_docs_and_schema_need_the_key_when_there_is_one(tmp_path):  # type: ignore[no-untyped-def]
    """The README says only /health (and the data-free page) is open: so are the docs."""
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path, api_key=KEY), index=False) as client:
        for url in ("/docs", "/redoc", "/openapi.json"):
            r = client.get(url)
            assert r.status_code == 401, (url, r.status_code)
            assert "paths" not in r.text and "swagger" not in r.text.lower()
            assert client.get(url, headers={"X-API-Key": KEY}).status_code == 200
        schema = client.get("/openapi.json", headers={"X-API-Key": KEY}).json()
        assert "/search" in schema["paths"]
    with running_app(app_settings(tmp_path), index=False) as client:  # no key: all open
        assert client.get("/docs").status_code == 200
        assert "swagger" in client.get("/docs").text.lower()


def test_the_schema_states_errors_and_input_rules(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path), index=False) as client:
        schema = client.get("/openapi.json").json()
    paths, models = schema["paths"], schema["components"]["schemas"]
    for path, method in (("/search", "get"), ("/search", "post"), ("/classify", "post"),
                         ("/detect", "post"), ("/items/{item_id}/image", "get")):
        codes = paths[path][method]["responses"]
        assert {"400", "401", "404", "422", "503"} <= set(codes), (path, sorted(codes))
    assert "409" in paths["/items/{item_id}/image"]["get"]["responses"]
    get = {p["name"]: p for p in paths["/search"]["get"]["parameters"]}
    assert get["after"]["schema"]["anyOf"][0]["pattern"].startswith("^\\d{4}")
    assert "YYYY-MM-DD" in get["before"]["description"]
    assert "At least one of" in paths["/search"]["get"]["description"]
    body = models["SearchRequest"]
    assert "At least one of" in body["description"]
    assert body["properties"]["after"]["anyOf"][0]["pattern"].startswith("^\\d{4}")
    assert "At least one of" in paths["/search"]["post"]["requestBody"]["description"]
    assert "LabelRequest" in str(paths["/labels/{set_name}"]["post"]["requestBody"])
    text = models["ClassifyRequest"]["properties"]["labels"]["items"]
    assert text["maxLength"] == 200
