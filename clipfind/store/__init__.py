"""The store: the catalog (source of truth) and the FAISS index derived from it. The only
package that speaks SQL: others call the catalog's methods (``catalog.labels``,
``catalog.texts``, ``catalog.ids_matching``, ``clipfind.store.writes``)."""

from clipfind.store.catalog import Catalog, Item
from clipfind.store.collection import Collection
from clipfind.store.status import ItemStatus
from clipfind.store.vectors import VectorIndex

__all__ = ["Catalog", "Collection", "Item", "ItemStatus", "VectorIndex"]
