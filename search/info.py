"""What ``clipfind info`` and ``GET /info`` show about a collection."""

from __future__ import annotations

from typing import Any

from clipfind.store.collection import Collection
from clipfind.store.schema import STATUS_OK, STATUS_SKIPPED


def collection_info(collection: Collection) -> dict[str, Any]:
    catalog = collection.catalog
    index = collection.vector_index()
    url = catalog.engine.url.render_as_string(hide_password=True)
    return {
        "collection": collection.settings.collection,
        "model": collection.stored_model,
        "dim": collection.stored_dim,
        "indexed": catalog.count(STATUS_OK),
        "skipped": catalog.count(STATUS_SKIPPED),
        "index": {"kind": index.kind, "vectors": len(index), "generation": index.generation},
        "database": url,
        "data_dir": str(collection.settings.data_dir),
        "skipped_files": [
            {"id": i, "path": p, "reason": r} for i, p, r in catalog.skipped()
        ],
    }
