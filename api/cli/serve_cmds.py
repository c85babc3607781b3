"""``clipfind serve``: the HTTP API and the web page, on uvicorn."""

from __future__ import annotations

import json as jsonlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from clipfind.api.cli.common import (
    CollectionOpt,
    DataDirOpt,
    DbUrlOpt,
    DeviceOpt,
    EngineOpt,
    IndexMemoryOpt,
    JsonOpt,
    ModelOpt,
    TextPrecisionOpt,
    make_settings,
)


def serve(
    host: Annotated[str, typer.Option(help="Address to bind. The default serves this machine "
                    "only; 0.0.0.0 exposes your photos to the network (set an API key).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).", min=0, max=65535)] = 8000,
    root: Annotated[list[Path], typer.Option("--root", help="A folder POST /index may index; "
                    "repeatable. Clients name roots, never paths. Env: CLIPFIND_ROOTS "
                    "(JSON list).")] = [],  # noqa: B006
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="CLIPFIND_API_KEY",
                       help="Require this key on every endpoint but /health.", show_default=False,
                       show_envvar=True)] = None,
    cors_origin: Annotated[list[str], typer.Option("--cors-origin", help="Allow browser "
                           "requests from this origin; repeatable. Default: CORS off.")] = [],  # noqa: B006
    allowed_host: Annotated[list[str], typer.Option("--allowed-host", help="Also answer "
                            "requests for this host name (the Host header), e.g. a name the "
                            "server is reached by on your network; repeatable; '*' for any. "
                            "Default: localhost and the bound address only (DNS rebinding "
                            "protection). Env: CLIPFIND_ALLOWED_HOSTS (JSON list).")] = [],  # noqa: B006
    max_upload_bytes: Annotated[int | None, typer.Option(help="Largest upload accepted.")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Refuse images with more pixels.")] = None,
    index_memory: IndexMemoryOpt = None,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, text_precision: TextPrecisionOpt = None,
    engine: EngineOpt = None, json: JsonOpt = False,
) -> None:
    """Serve the HTTP API (docs at /docs) and the web page (at /) until Ctrl-C.

    With --json, one JSON document with the URL is printed once the server listens.
    """
    import uvicorn

    from clipfind.api.http import create_app

    settings = make_settings(model=model, data_dir=data_dir, collection=collection,
                             index_memory=index_memory,
                             db_url=db_url, device=device, roots=root or None,
                             api_key=api_key, cors_origins=cors_origin or None,
                             allowed_hosts=allowed_host or None,
                             max_upload_bytes=max_upload_bytes, max_pixels=max_pixels,
                             text_precision=text_precision, engine=engine)
    # A name given as --host is how clients reach the server, so it is an allowed Host.
    # (A wildcard bind names no host: its connections' own addresses are allowed.)
    if host not in ("0.0.0.0", "::", ""):
        settings = settings.model_copy(update={"allowed_hosts": [*settings.allowed_hosts, host]})
    app = create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on",
                            timeout_graceful_shutdown=10)
    server = _make_server(config, json)
    quiet = _HideStartupTrace()
    logging.getLogger("uvicorn.error").addFilter(quiet)
    try:
        server.run()
    except SystemExit:  # uvicorn exits 3 when startup fails; say why in one sentence
        error = getattr(app.state, "startup_error", None)
        if error is not None:
            raise error from None
        raise
    finally:
        logging.getLogger("uvicorn.error").removeFilter(quiet)


def _make_server(config: Any, as_json: bool) -> Any:
    """uvicorn's server, announcing the bound URL (port 0 resolved) once it listens."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                _announce(self, as_json)

    return Server(config)


def _announce(server: Any, as_json: bool) -> None:
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    if as_json:
        sys.stdout.write(jsonlib.dumps({"url": url, "docs": f"{url}/docs",
                                        "host": host, "port": port}) + "\n")
    else:
        sys.stdout.write(f"clipfind is serving {url}  (web page: {url}/ , API docs: {url}/docs)\n")
    sys.stdout.flush()


class _HideStartupTrace(logging.Filter):
    """A domain error at startup (model offline, mismatch) is reported by ``main`` as one
    sentence; uvicorn's copy of the trace would only bury it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not ("Traceback" in text and "clipfind.errors" in text)


def register(app: typer.Typer) -> None:
    app.command()(serve)
