"""The app factory. Nothing heavy happens at import or in ``create_app``: the lifespan
opens the collection and loads the model; shutdown cancels jobs and closes the store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from clipfind import __version__
from clipfind.api.http.deps import require_api_key
from clipfind.api.http.errors import BodyLimitMiddleware, install_error_handlers
from clipfind.api.http.hosts import HostCheckMiddleware
from clipfind.api.http.limits import HeavyGate, default_slots
from clipfind.api.http.models import ErrorOut
from clipfind.api.http.state import EncoderFactory, open_state
from clipfind.config import Settings
from clipfind.errors import ClipfindError

log = logging.getLogger(__name__)
STATIC = Path(str(files("clipfind.api") / "web" / "static"))
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why} for code, why in [
        (400, "A malformed request (e.g. an unparsable multipart body), or a Host header "
              "this server does not answer (DNS rebinding protection)."),
        (401, "Missing or wrong API key."), (404, "No such item, label set, root or job."),
        (409, "The collection's state forbids it (e.g. model mismatch, or an item's file "
              "changed since it was indexed)."),
        (413, "Upload too large."), (415, "Unsupported content type."),
        (422, "Invalid input: the message says which and why."),
        (503, "Busy (every slot for heavy work is taken: retry after the Retry-After "
              "header's seconds) or the catalog cannot be used.")]
}
DESCRIPTION = """Search a photo collection by text and by example, label it and detect
objects zero-shot, on one CLIP/SigLIP embedding space. When the server has an API key
(`CLIPFIND_API_KEY`), every endpoint but `/health` needs it as `X-API-Key: KEY` or
`Authorization: Bearer KEY`, this schema (`/openapi.json`) and `/docs`, `/redoc` too; the
web page at `/` carries no data and asks for the key. Requests must name this server
in their Host header (localhost, its address, or a name given with `--allowed-host`):
anything else is 400, against DNS rebinding. Items are addressed by id; only indexed
files are served, and only while they are still the files that were indexed."""


def create_app(settings: Settings | None = None,
               encoder_factory: EncoderFactory | None = None) -> FastAPI:
    """Build the app for ``settings``. ``encoder_factory(settings, collection)`` makes
    the encoder (tests pass a fake); default: the collection's open_clip model."""
    from clipfind.api.http import routers, routes_meta

    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            state = await run_in_threadpool(open_state, settings, encoder_factory)
        except ClipfindError as exc:
            app.state.startup_error = exc  # `clipfind serve` reports it as one sentence
            raise
        app.state.clipfind = state
        try:
            yield
        finally:
            await run_in_threadpool(state.close)

    app = FastAPI(title="clipfind", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.heavy = HeavyGate(settings.heavy_slots or default_slots(), settings.heavy_queue)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes + 1024 * 1024,
                       file_limit=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])
    # Added last, so it runs first: a request for a foreign host gets nothing else.
    app.add_middleware(HostCheckMiddleware, allowed=settings.allowed_hosts)
    app.include_router(routes_meta.public)
    secured = [Depends(require_api_key)]
    app.include_router(routes_meta.router, responses=ERRORS)
    for router in routers.SECURED:
        app.include_router(router, dependencies=secured, responses=ERRORS)
    _add_web(app)
    _customise_openapi(app)
    _add_docs(app, secured)
    return app


def _add_docs(app: FastAPI, secured: list[Any]) -> None:
    """The schema and its two viewers, behind the key like the data: the schema is a
    map of what the server offers, and the README promises that only /health is open.
    (With a key, open /docs from a client that sends it, e.g. a browser extension.)"""

    @app.get("/openapi.json", include_in_schema=False, dependencies=secured)
    def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=secured)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="clipfind API")

    @app.get("/redoc", include_in_schema=False, dependencies=secured)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="clipfind API")


def _add_web(app: FastAPI) -> None:
    """The page and its assets carry no data, so they load without the key; the page
    asks for the key when the API answers 401."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def _customise_openapi(app: FastAPI) -> None:
    from clipfind.api.http import routers
    from clipfind.api.http.uploads import add_body_schemas

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            app.openapi_schema = add_body_schemas(schema, routers.BODY_MODELS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
