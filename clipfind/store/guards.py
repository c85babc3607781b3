"""What keeps a collection's last copies safe: a catalog that is empty or new beside an
index that holds vectors is refused (the index may be all that is left of them), and an
index that cannot be saved (disk full, a folder in its place) is served from memory
instead of failing the search that rebuilt it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from clipfind.errors import StorageError
from clipfind.store.faults import sqlite_file

log = logging.getLogger(__name__)


def saved_vectors(index_path: Path) -> int:
    """How many vectors the saved index says it holds (0 when there is none)."""
    side = index_path.with_suffix(".json")
    try:
        return int(json.loads(side.read_text()).get("count", 0))
    except (OSError, ValueError, AttributeError):
        # no readable sidecar: a non-empty index file still counts as holding vectors
        try:
            return 1 if index_path.is_file() and index_path.stat().st_size > 0 else 0
        except OSError:
            return 0


def check_catalog_file(url: str, index_path: Path) -> None:
    """Before opening: a zero-length SQLite catalog beside a saved index is an error
    (opening it would make it a new, empty collection and rebuild the index from it)."""
    path = sqlite_file(url)
    if path is None:
        return
    try:
        empty = path.is_file() and path.stat().st_size == 0
    except OSError:
        return  # opening it reports what is wrong
    vectors = saved_vectors(index_path) if empty else 0
    if vectors:
        raise StorageError(
            f"The catalog {path} is empty (0 bytes) but {index_path} holds {vectors} vectors "
            "from earlier runs; nothing was changed. Restore the catalog from a backup; to "
            f"start a new collection instead, move {index_path.name} and "
            f"{index_path.with_suffix('.json').name} out of {index_path.parent} first."
        )


def check_fresh_catalog(shown_url: str, generation: int, index_path: Path) -> None:
    """After opening: a catalog never written to (generation 0) beside a saved index with
    vectors is a replaced or lost catalog, not a new collection."""
    if generation != 0:
        return
    vectors = saved_vectors(index_path)
    if vectors:
        raise StorageError(
            f"The catalog {shown_url} holds nothing but {index_path} holds {vectors} vectors "
            "from earlier runs: the catalog was replaced or lost; nothing was changed. "
            f"Restore the catalog, or move {index_path.name} and "
            f"{index_path.with_suffix('.json').name} out of {index_path.parent} to start anew."
        )


def save_or_warn(index: object, path: Path, newest: Callable[[], int | None] | None = None) -> bool:
    """Save ``index`` to ``path``; on failure keep serving it from memory and say why (the
    catalog holds every vector, so the next run rebuilds the file). ``newest()``: the
    catalog's generation (a newer file another process saved meanwhile is kept)."""
    try:
        index.save(path, newest)  # type: ignore[attr-defined]
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1][:200]
        log.warning("cannot save the index to %s (%s); searching from memory. Free disk "
                    "space, or remove what is in its place, and it is written next time.",
                    path, reason)
        return False
    return True
