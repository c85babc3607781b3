"""The store: the catalog (source of truth) and the FAISS index derived from it."""

from clipfind.store.catalog import Catalog, Item
from clipfind.store.collection import Collection
from clipfind.store.vectors import VectorIndex

__all__ = ["Catalog", "Collection", "Item", "VectorIndex"]
