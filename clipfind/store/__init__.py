"""The store: the catalog (source of truth) and the FAISS index derived from it. The only
package that speaks SQL: others call the catalog's methods (``catalog.labels``,
``catalog.texts``, ``catalog.ids_matching``, ``clipfind.store.writes``).

Names are imported on first use: a one-shot query imports the modules it needs, and
SQLAlchemy only if it opens the full catalog (``clipfind.store.quick``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Catalog": "clipfind.store.catalog",
    "Item": "clipfind.store.catalog",
    "Collection": "clipfind.store.collection",
    "ItemStatus": "clipfind.store.status",
    "VectorIndex": "clipfind.store.vectors",
}
__all__ = ["Catalog", "Collection", "Item", "ItemStatus", "VectorIndex"]

if TYPE_CHECKING:
    from clipfind.store.catalog import Catalog, Item
    from clipfind.store.collection import Collection
    from clipfind.store.status import ItemStatus
    from clipfind.store.vectors import VectorIndex


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clipfind.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
