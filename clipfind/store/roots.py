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
    return _loads(catalog.get_meta(key) or "", default)


def devices(catalog: Catalog) -> dict[str, int]:
    """``{root: st_dev}`` as of each root's last complete run."""
    found = _load(catalog, DEVICES_KEY, {})
    return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _loads(raw: str, default: object) -> object:
    try:
        found = json.loads(raw) if raw else default
    except ValueError:
        return default
    return found if isinstance(found, type(default)) else default


def record_devices(catalog: Catalog, seen: dict[str, int]) -> None:
    # read and written in one locked transaction: runs on other roots record theirs too
    if seen:
        catalog.modify_meta(DEVICES_KEY, "{}", lambda raw: json.dumps({**_loads(raw, {}), **seen}))  # type: ignore[dict-item]


def _under(path: str, roots: Iterable[Path]) -> bool:
    return any(path == str(r) or path.startswith(str(r).rstrip("/") + "/") for r in roots)


def unstorable(catalog: Catalog) -> list[tuple[str, str]]:
    """``(printable path, reason)`` of files the last runs could not store."""
    found = _load(catalog, UNSTORABLE_KEY, [])
    return [(str(p), str(r)) for p, r in found] if isinstance(found, list) else []


def record_unstorable(catalog: Catalog, roots: list[Path], rejected: list[tuple[str, str]]) -> None:
    """Replace the list's entries under ``roots`` (this run looked at them) by ``rejected``."""

    def change(raw: str) -> str:
        found = _loads(raw, [])
        kept = [(str(p), str(r)) for p, r in found if not _under(str(p), roots)]  # type: ignore[attr-defined]
        return json.dumps(sorted(set(kept) | set(rejected)))

    if rejected or catalog.get_meta(UNSTORABLE_KEY):
        catalog.modify_meta(UNSTORABLE_KEY, "[]", change)
