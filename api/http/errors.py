"""Error handling at the HTTP boundary: domain errors become their ``http_status`` with a
clear message; anything unexpected is logged and answered with a generic 500, never a
stack trace. Request bodies are capped before they are read."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clipfind.errors import ClipfindError

log = logging.getLogger(__name__)


class PayloadTooLarge(HTTPException):
    """413: a request body or uploaded file over ``Settings.max_upload_bytes``."""

    def __init__(self, limit: int, what: str = "request body") -> None:
        super().__init__(
            413,
            f"{what} is larger than the {limit:,}-byte limit "
            "(the server's max_upload_bytes / CLIPFIND_MAX_UPLOAD_BYTES)",
        )


def install_error_handlers(app: FastAPI) -> None:
    """Map :class:`ClipfindError` to its status; catch everything else."""

    @app.exception_handler(ClipfindError)
    async def _domain_error(_request: Request, exc: ClipfindError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [_safe_error(e) for e in exc.errors()]}, status_code=422)

    app.add_middleware(CatchAllMiddleware)


_MAX_ECHO = 200  # characters of a bad input echoed back: enough to see which, no more


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON can carry it: NaN/Infinity (which the JSON body parser
    accepts) and bytes (a body that is not UTF-8) become short strings, so the 422 answer
    that echoes a bad input can always be written."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # 'nan', 'inf', '-inf'
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:_MAX_ECHO]).decode("utf-8", "replace")
    if isinstance(value, str):
        return value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "…"
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in list(value)[:50]]
    return json_safe(str(value))


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error as JSON: a non-finite number gets a message that says so."""
    out = {key: json_safe(error[key]) for key in ("type", "loc", "msg", "input", "ctx") if key in error}
    given = error.get("input")
    if isinstance(given, float) and not math.isfinite(given):
        out["msg"] = f"{error.get('msg', 'invalid')} (got {given}: not a finite number)"
    if error.get("type") == "json_invalid":
        out["msg"] = f"the body is not valid UTF-8 JSON: {error.get('msg', '')}"
    return out


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class CatchAllMiddleware:
    """The last line: an exception that escaped every handler is logged with its trace
    here and the client gets ``{"detail": "internal server error"}``. Pure ASGI (not
    Starlette's error middleware) so test clients see the response, not a re-raise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await _send_json(send, 500, {"detail": "internal server error"})


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` (413), by Content-Length up front and by
    counting chunked bodies as they arrive, so a huge upload is never spooled to disk."""

    def __init__(self, app: ASGIApp, max_bytes: int, file_limit: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.file_limit = file_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, {"detail": PayloadTooLarge(self.file_limit).detail})
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, so FastAPI's body parsing re-raises it as is.
                    raise PayloadTooLarge(self.file_limit)
            return message

        await self.app(scope, limited_receive, send)
