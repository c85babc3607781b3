"""The indexer: walks a collection and brings the store up to date with it.

Its names load on first use, so a process that needs one stage only (a Ray worker
importing :mod:`clipfind.indexer.ray_work`) does not import the catalog with them."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clipfind.indexer.run import IndexSummary, index_paths
    from clipfind.indexer.walk import FileEntry, walk

__all__ = ["FileEntry", "IndexSummary", "index_paths", "walk"]
_WHERE = {"IndexSummary": "run", "index_paths": "run", "FileEntry": "walk", "walk": "walk"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"clipfind.indexer.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'clipfind.indexer' has no attribute {name!r}")
