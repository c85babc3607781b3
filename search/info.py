"""What ``clipfind info`` and ``GET /info`` show about a collection."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from clipfind.store import roots
from clipfind.store.collection import Collection
from clipfind.store.status import ItemStatus


@dataclass(frozen=True)
class CollectionInfo:
    """:func:`collection_info` as a typed result (``Clipfind.info()``); keys added to
    the document later land in ``extra`` and come back in :meth:`as_dict`."""

    collection: str
    model: str | None
    dim: int | None
    indexed: int
    skipped: int
    index: dict[str, Any]
    database: str
    data_dir: str
    skipped_files: list[dict[str, Any]]
    texts: int = 0  # indexed texts, for image -> text search (clipfind index-texts)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CollectionInfo:
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in doc.items() if k in names},
                   extra={k: v for k, v in doc.items() if k not in names})

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**out, **self.extra}


def collection_info(collection: Collection) -> dict[str, Any]:
    catalog = collection.catalog
    index = collection.vector_index()
    url = catalog.shown_url
    unstorable = roots.unstorable(catalog)  # names the catalog cannot hold: no item, no id
    return {
        "collection": collection.settings.collection,
        "model": collection.stored_model,
        "dim": collection.stored_dim,
        "indexed": catalog.count(ItemStatus.OK),
        "skipped": catalog.count(ItemStatus.SKIPPED) + len(unstorable),
        "texts": catalog.texts.count(),
        # what the last index run that encoded images ran on (ClipEncoder.engine_label)
        "engine": catalog.get_meta("encoded_by"),
        "index": {"kind": index.kind, "vectors": len(index), "generation": index.generation},
        "database": url,
        "data_dir": str(collection.settings.data_dir),
        "skipped_files": [
            {"id": i, "path": p, "reason": r} for i, p, r in catalog.skipped()
        ] + [{"id": None, "path": p, "reason": r} for p, r in unstorable],
    }
