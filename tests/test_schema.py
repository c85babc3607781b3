"""Property-based run against the app's own OpenAPI schema (schemathesis): whatever a
client sends, valid or not, the server answers without a 5xx, with a documented status
and content type, and a body that matches the schema. Bounded: a few examples per
operation, derandomised so a run is repeatable.

The cases are generated from the schema and sent through our own ``TestClient`` (its
lifespan under the test's control) rather than schemathesis' pytest loader."""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clipfind.api.http import create_app  # noqa: E402
from clipfind.config import Settings  # noqa: E402
from clipfind.indexer import index_paths  # noqa: E402
from clipfind.search.zeroshot.labeling import label_collection  # noqa: E402
from clipfind.store.collection import Collection  # noqa: E402
from tests.fakes import ColourEncoder  # noqa: E402
from tests.pg import db_url  # noqa: E402
from tests.test_api_support import app_settings, make_photos  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# The schema is static: an app that is never started describes it.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(model="fake-colour")).openapi())
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}


KEY = "schema-key"


def _serve(tmp: Any, **extra: Any) -> Any:
    make_photos(tmp / "photos")
    cfg = app_settings(tmp, max_upload_bytes=200_000, max_pixels=4_000_000, **extra)
    encoder = ColourEncoder()
    collection = Collection(cfg)  # indexed and labelled up front: ids 1..8 and a set exist
    index_paths(collection, encoder, [tmp / "photos"])
    label_collection(collection, encoder, ["red", "green", "blue"], name="colours")
    collection.close()
    return TestClient(create_app(cfg, lambda _s, _c: encoder), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(tmp_path_factory, request, catalog_backend):  # type: ignore[no-untyped-def]
    """A server over a SQLite catalog, then over a PostgreSQL one (tests/pg.py)."""
    url = db_url(request, catalog_backend)
    with _serve(tmp_path_factory.mktemp("schema"), db_url=url) as c:
        yield c


@pytest.fixture(scope="module")
def keyed_client(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A server with an API key (SQLite): the cases below send it."""
    with _serve(tmp_path_factory.mktemp("schema-key"), api_key=KEY) as c:
        yield c


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def send(client: TestClient, kwargs: dict[str, Any]) -> Any:
    """A requests-style call (what schemathesis serialises) through the test client."""
    args: dict[str, Any] = {"headers": kwargs.get("headers"), "params": kwargs.get("params")}
    if "json" in kwargs:
        args["json"] = kwargs["json"]
    if kwargs.get("files") is not None:
        args["files"] = [(name, (part[0], _as_bytes(part[1]), *part[2:]))
                         for name, part in kwargs["files"]]
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        args["content"] = data
    elif data:
        args["data"] = data
    return client.request(kwargs["method"], kwargs["url"], **args)


def test_every_operation_is_covered() -> None:
    assert len(OPERATIONS) >= 17 and "POST /search" in OPERATIONS and "POST /detect" in OPERATIONS


def _check(client: TestClient, label: str, examples: int, key: str | None = None) -> None:
    operation = OPERATIONS[label]

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):  # type: ignore[no-untyped-def]
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        if key is not None:  # whatever auth the case made up, the right key wins
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-API-Key": key}
        response = send(client, kwargs)
        response.request.read()  # the checks look at the request body too
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_matches_its_schema(client, label):  # type: ignore[no-untyped-def]
    _check(client, label, 12)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_matches_its_schema_with_a_key(keyed_client, label):  # type: ignore[no-untyped-def]
    _check(keyed_client, label, 6, KEY)
