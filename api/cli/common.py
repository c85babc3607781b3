"""Options every command shares, and small helpers to build settings and render."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clipfind.config import Settings

if TYPE_CHECKING:
    from clipfind.encoding import Encoder
    from clipfind.library import Clipfind
    from clipfind.store.collection import Collection

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="open_clip spec: NAME/PRETRAINED, hf-hub:ORG/REPO or "
                 "local-dir:PATH. Default: the collection's own model, else "
                 "ViT-B-32/laion2b_s34b_b79k. Env: CLIPFIND_MODEL."),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where collections live. Env: CLIPFIND_DATA_DIR."),
]
CollectionOpt = Annotated[
    str | None,
    typer.Option("--collection", "-c", help="Collection name (default 'default'). "
                 "Env: CLIPFIND_COLLECTION."),
]
DbUrlOpt = Annotated[
    str | None,
    typer.Option("--db-url", help="SQLAlchemy URL of the catalog (default: SQLite in the "
                 "collection folder). Env: CLIPFIND_DB_URL."),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps.")
]
TextPrecisionOpt = Annotated[
    str | None, typer.Option("--text-precision", help="Text encoding: auto (int8 on CPU, "
                             "checked against fp32), fp32 or int8. Env: CLIPFIND_TEXT_PRECISION."),
]
EngineOpt = Annotated[
    str | None, typer.Option("--engine", help="What runs the model: auto (ONNX Runtime on a "
                             "CPU where its export matches torch, else torch), torch or onnx. "
                             "Env: CLIPFIND_ENGINE.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _memory_size(value: str | None) -> str | None:
    from clipfind.config import parse_memory

    try:
        parse_memory(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


IndexMemoryOpt = Annotated[
    str | None, typer.Option("--index-memory", callback=_memory_size, help="Memory the vector "
                             "index may take, e.g. 2GB: IVF-SQ8 while it fits, else IVF-PQ with "
                             "its lists on disk (docs/scaling.md). Env: CLIPFIND_INDEX_MEMORY."),
]


def make_settings(**given: Any) -> Settings:
    """Settings from the options a user gave (``None`` = not given), env and defaults;
    a value they refuse is a ``QueryError`` (exit 2)."""
    from clipfind.library_args import settings_of

    return settings_of(None, given)


def open_collection(settings: Settings) -> Collection:
    from clipfind.store.collection import Collection

    return Collection(settings)


def make_encoder(settings: Settings, collection: Collection) -> Encoder:
    """The collection's encoder (tests replace this one function with a fake)."""
    from clipfind.library_args import default_encoder

    return default_encoder(settings, collection)


def open_clipfind(settings: Settings) -> Clipfind:
    """The library object every command calls: the shells only parse and render."""
    from clipfind.library import Clipfind

    # a lambda, so a test's replacement of make_encoder is seen at call time
    return Clipfind(settings, encoder_factory=lambda s, c: make_encoder(s, c))


def score_text(value: float, digits: int = 3) -> str:
    """A score for a terminal: rounding never shows "-0.000" (a cosine of -0.0001 is 0)."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def emit_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")


def console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console()


def progress_bar(label: str, enabled: bool):  # type: ignore[no-untyped-def]
    """A ``(callback, context manager)`` pair; a no-op off a terminal."""
    from contextlib import nullcontext

    if not enabled or not sys.stderr.isatty():
        return None, nullcontext()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=__import__("rich.console").console.Console(stderr=True))
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar
