"""The Host-header check against DNS rebinding.

A web page on ``attacker.example`` can point that name at 127.0.0.1 once the browser
has loaded it, and then read this server's answers as same-origin. Its requests still
say ``Host: attacker.example``, so answering only the names this server is reached by
stops it: ``localhost``, the loopback addresses, the address the connection actually
arrived at (the bind address; for a wildcard bind, the machine's address the client
used), and the names given with ``--allowed-host`` / ``CLIPFIND_ALLOWED_HOSTS``
(``*`` turns the check off, e.g. behind a proxy that checks names itself).
"""

from __future__ import annotations

import ipaddress
import json

from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheckMiddleware:
    """Answers 400 to a request whose Host is none of the allowed names."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed
        self.allowed = LOCAL_NAMES | {host_name(h) for h in allowed if h != "*"}

    def allows(self, header: str | None, server: tuple[str, int] | None) -> bool:
        if self.any_host or header is None:  # HTTP/1.0 without Host: no browser sends that
            return True
        name = host_name(header)
        if name in self.allowed:
            return True
        # The address this connection reached (a test client's fake name is not one).
        bound = host_name(str(server[0])) if server else ""
        return bool(name) and name == bound and _is_ip(bound)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [v for k, v in scope["headers"] if k == b"host"]
        header = headers[0].decode("latin-1") if len(headers) == 1 else (None if not headers else "")
        if self.allows(header, scope.get("server")):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": (
            f"host {(header or '')[:100]!r} is not served here (DNS rebinding protection): reach the server "
            "by localhost or its address, or start it with --allowed-host NAME")}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
