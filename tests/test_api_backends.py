"""Inputs one backend stores and the other refuses are checked at the edge, so SQLite
and PostgreSQL answer alike and never 500: ids past 32 bits (PostgreSQL's integer),
NUL characters (PostgreSQL text cannot hold them), labels past the 200-character
column and set names past 100."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pg import db_url
from tests.test_api_support import app_settings, make_photos, running_app

BIG = 2**31  # one past PostgreSQL's integer
CASES: list[tuple[str, str, Any, int]] = [
    ("GET", f"/items/{BIG}", None, 404),
    ("GET", f"/items/{BIG}/image", None, 404),
    ("GET", f"/items/{BIG}/thumbnail", None, 404),
    ("GET", f"/items/{2**63 - 1}", None, 404),
    ("GET", f"/items/{10**30}", None, 404),
    ("GET", f"/search?item={BIG}", None, 404),
    ("GET", f"/search?q=%23{BIG}", None, 404),
    ("POST", "/search", {"items": [BIG]}, 404),
    ("POST", "/search", {"q": "red", "not_items": [2**40]}, 404),
    ("POST", "/classify", {"labels": ["red"], "item": BIG}, 404),
    ("POST", "/detect", {"queries": ["red"], "item": BIG}, 404),
    ("GET", "/search?q=red&path=%2Fa%00b", None, 422),
    ("GET", "/search?q=red&label=red%00", None, 422),
    ("GET", "/search?q=red&label=colours:red%00", None, 422),
    ("GET", "/search?q=red%00", None, 422),
    ("GET", "/search?q=red&not=b%00", None, 422),
    ("POST", "/search", {"q": "red", "path": "a\x00"}, 422),
    ("POST", "/search", {"q": "red", "label": "\x00"}, 422),
    ("GET", "/labels/a%00b", None, 422),
    ("GET", "/labels/a%00b/items?label=red", None, 422),
    ("GET", "/labels/colours/items?label=re%00d", None, 422),
    ("POST", "/labels/a%00b", {"labels": ["red"]}, 422),
    ("POST", "/labels/nul", {"labels": ["red\x00"]}, 422),
    ("POST", "/labels/nul", {"labels": ["red"], "templates": ["a {}\x00"]}, 422),
    ("POST", "/labels/nul", {"labels": ["red"], "path": "*\x00"}, 422),
    ("POST", "/classify", {"labels": ["re\x00d"], "item": 1}, 422),
    ("POST", "/detect", {"queries": ["re\x00d"], "item": 1}, 422),
    ("POST", "/index", {"root": "photos\x00"}, 422),
    ("GET", "/jobs/a%00b", None, 404),
    ("POST", "/labels/long", {"labels": ["l" * 201]}, 422),
    ("POST", "/labels/" + "n" * 101, {"labels": ["red"]}, 422),
    ("GET", "/labels/" + "n" * 101, None, 422),
    ("GET", "/labels/nosuchset", None, 404),
    ("GET", "/search?q=red&label=" + "x" * 250, None, 404),  # no such label, on both
    ("GET", "/search?q=red&path=" + "p" * 900, None, 200),
    ("POST", "/labels/edge", {"labels": ["l" * 200, "red"]}, 200),  # exactly the column width
    ("GET", "/labels/edge/items?label=" + "l" * 200, None, 200),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory, request, catalog_backend):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("backends")
    make_photos(tmp / "photos")
    settings = app_settings(tmp, db_url=db_url(request, catalog_backend))
    with running_app(settings, raise_server_exceptions=False) as c:
        assert c.post("/labels/colours", json={"labels": ["red", "green"]}).status_code == 200
        yield c


@pytest.mark.parametrize("method, url, body, status", CASES,
                         ids=[f"{m} {u[:40]}" for m, u, _, _ in CASES])
def test_both_backends_answer_alike(client, method, url, body, status):  # type: ignore[no-untyped-def]
    r = client.request(method, url, json=body)
    assert r.status_code == status, (method, url, r.status_code, r.text[:300])
    assert "internal server error" not in r.text
