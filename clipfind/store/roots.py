"""Facts about indexed roots kept in the catalog's meta table: the device each root was
on (a remounted or unmounted drive shows up as another device), and the files whose
names the catalog cannot hold (not valid UTF-8), so ``info`` can list them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from clipfind.store.catalog import Catalog

DEVICES_KEY = "root_devices"
UNSTORABLE_KEY = "unstorable_names"


def _load(catalog: Catalog, key: str, default: object) -> object:
    raw = catalog.get_meta(key)
    try:
        return json.loads(raw) if raw else default
    except ValueError:
        return default


def devices(catalog: Catalog) -> dict[str, int]:
    """``{root: st_dev}`` as of each root's last complete run."""
    found = _load(catalog, DEVICES_KEY, {})
    return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}


def record_devices(catalog: Catalog, seen: dict[str, int]) -> None:
    if seen:
        catalog.set_meta(DEVICES_KEY, json.dumps({**devices(catalog), **seen}))


def _under(path: str, roots: Iterable[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip("/") + "/") for r in roots)


def unstorable(catalog: Catalog) -> list[tuple[str, str]]:
    """``(printable path, reason)`` of files the last runs could not store."""
    found = _load(catalog, UNSTORABLE_KEY, [])
    return [(str(p), str(r)) for p, r in found] if isinstance(found, list) else []


def record_unstorable(catalog: Catalog, roots: list[Path], rejected: list[tuple[str, str]]) -> None:
    """Replace the list's entries under ``roots`` (this run looked at them) by ``rejected``."""
    kept = [(p, r) for p, r in unstorable(catalog) if not _under(p, roots)]
    merged = sorted(set(kept) | set(rejected))
    if merged or catalog.get_meta(UNSTORABLE_KEY):
        catalog.set_meta(UNSTORABLE_KEY, json.dumps(merged))
