"""Prompt templates for zero-shot classification and for captions made from class names.

Shipped sets are package data, ``clipfind.data/templates/NAME.json`` (``imagenet``: CLIP's 80 ImageNet
templates; ``imagenet-short``: CLIP's 7-template subset; ``simple``; ``plain``). A path
to a ``.json`` file (a list, or ``{"templates": [...]}``) or a ``.txt`` file (one
template per line) works too. Every template holds one ``{}`` for the label.
"""

from __future__ import annotations

import json
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from clipfind.errors import QueryError

TEMPLATE_DIR = files("clipfind.data") / "templates"


def available_templates() -> list[str]:
    """Names of the shipped template sets."""
    return sorted(p.name.removesuffix(".json") for p in TEMPLATE_DIR.iterdir() if p.name.endswith(".json"))


def load_templates(name_or_path: str | Path) -> list[str]:
    """The templates of a shipped set or a file; each contains ``{}`` exactly once."""
    path: Path | Traversable = Path(name_or_path).expanduser()
    if not path.is_file():
        path = TEMPLATE_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise QueryError(
            f"no template set {str(name_or_path)!r}: give one of {', '.join(available_templates())} "
            "or a .json/.txt file"
        )
    if path.name.endswith(".json"):
        raw = json.loads(path.read_text(encoding="utf-8"))
        items = raw["templates"] if isinstance(raw, dict) else raw
    else:
        items = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    templates = [str(t) for t in items]
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise QueryError(f"{path}: every template needs exactly one '{{}}' (bad: {bad[:3]})")
    return templates


def fill(templates: list[str], label: str) -> list[str]:
    """Every template with ``label`` put in."""
    return [t.replace("{}", label) for t in templates]
