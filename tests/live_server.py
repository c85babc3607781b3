"""A real uvicorn server in a thread, on 127.0.0.1 and a free port, for tests that need
real HTTP (Host headers as sent on the wire, concurrent clients). No tests here."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from clipfind.api.http import create_app
from clipfind.config import Settings
from tests.fakes import ColourEncoder


class Address(tuple):  # type: ignore[type-arg]
    """``(host, port)``, with the served ``app`` (its state) alongside."""

    app: Any


@contextmanager
def live_server(settings: Settings, encoder: Any | None = None) -> Iterator[Address]:
    """``(host, port)`` of a running server over ``settings``; stopped on exit."""
    enc = encoder or ColourEncoder()
    app = create_app(settings, lambda _s, _c: enc)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the server did not start")
        time.sleep(0.02)
    address = Address(("127.0.0.1", server.servers[0].sockets[0].getsockname()[1]))
    address.app = app
    try:
        yield address
    finally:
        server.should_exit = True
        thread.join(30)


def request(address: tuple[str, int], method: str, url: str, host: str | None = None,
            body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly the Host header given (default: the address itself)."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else f"{address[0]}:{address[1]}")
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()
