"""DNS rebinding: the server answers only the Host names it is reached by (localhost,
the loopback addresses, the address a connection arrived at) and the names allowed in
its settings (``--allowed-host``); anything else is 400 before any route runs."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from clipfind.api.http import create_app
from clipfind.api.http.hosts import host_name
from tests.fakes import ColourEncoder
from tests.live_server import live_server, request
from tests.test_api_support import app_settings, make_photos, running_app


@pytest.mark.parametrize("header, name", [
    ("localhost", "localhost"), ("LOCALHOST:8000", "localhost"), ("127.0.0.1:80", "127.0.0.1"),
    ("[::1]:8000", "::1"), ("[::1]", "::1"), ("::1", "::1"), ("photos.lan.", "photos.lan"),
])
def test_host_names_are_read_without_port_and_brackets(header, name):  # type: ignore[no-untyped-def]
    assert host_name(header) == name


def test_real_http_with_a_foreign_host_is_400(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path)):  # indexes the photos
        pass
    settings = app_settings(tmp_path, allowed_hosts=["photos.lan"])
    with live_server(settings) as address:
        port = address[1]
        for host in (None, f"localhost:{port}", "localhost", f"[::1]:{port}", "127.0.0.1",
                     "photos.lan", f"PHOTOS.LAN:{port}"):
            status, _, body = request(address, "GET", "/search?q=red", host=host)
            assert status == 200, (host, status, body[:200])
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example",
                     "localhost.attacker.example", "10.0.0.1", "photos.lan.evil", ""):
            for url in ("/search?q=red", "/items/1/image", "/health", "/", "/openapi.json"):
                status, headers, body = request(address, "GET", url, host=host)
                assert status == 400, (host, url, status)
                assert headers["content-type"] == "application/json"
                assert "--allowed-host" in json.loads(body)["detail"]
                assert b"red.jpg" not in body and b"\xff\xd8" not in body


def test_test_clients_host_must_be_allowed_explicitly(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    settings = app_settings(tmp_path, allowed_hosts=[])
    with TestClient(create_app(settings, lambda _s, _c: ColourEncoder())) as client:
        r = client.get("/health")  # Host: testserver
        assert r.status_code == 400 and "testserver" in r.json()["detail"]
        assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
    with running_app(app_settings(tmp_path, allowed_hosts=["*"]), index=False) as client:
        assert client.get("/health", headers={"Host": "anything.example"}).status_code == 200


def test_clipfind_serve_takes_allowed_hosts(tmp_path, tiny_checkpoint):  # type: ignore[no-untyped-def]
    """The CLI option reaches the server; the --host name is allowed too."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "clipfind", "serve", "--port", "0", "--json", "--host", "localhost",
           "--allowed-host", "photos.lan", "--data-dir", str(tmp_path / "data"),
           "--model", f"local-dir:{tiny_checkpoint}", "--device", "cpu"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line, (tmp_path / "serve.log").read_text()
        doc = json.loads(line)
        address = (doc["host"], doc["port"])
        for host, status in (("photos.lan", 200), (f"localhost:{doc['port']}", 200),
                             ("attacker.example", 400), ("photos.lan.attacker.example", 400)):
            assert request(address, "GET", "/health", host=host)[0] == status, host
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
