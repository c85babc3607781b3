"""clipfind: self-hosted contrastive search for images.

The Python API is :func:`open` (a :class:`Clipfind` for one collection) and the result
types its methods return; see :mod:`clipfind.library` and ``docs/python-api.md``::

    import clipfind

    with clipfind.open(collection="photos") as cf:
        cf.index(["~/Pictures"])
        for hit in cf.search("a dog on a beach", k=5).hits:
            print(f"{hit.score:.3f} {hit.path}")

Names are imported on first use (``import clipfind`` loads neither torch nor the
store). The package also holds the foundations every layer builds on: settings,
errors, the encoder, safe image decoding and the store (catalog + FAISS index).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "open": "clipfind.library",
    "Clipfind": "clipfind.library",
    "Settings": "clipfind.config",
    "Encoder": "clipfind.encoding",
    "ClipEncoder": "clipfind.encoder",
    "SearchPage": "clipfind.search.engine",
    "Hit": "clipfind.search.engine",
    "Filters": "clipfind.search.filters",
    "TextHit": "clipfind.search.texts",
    "TextIndexSummary": "clipfind.search.texts",
    "IndexSummary": "clipfind.indexer.run",
    "Classification": "clipfind.search.zeroshot.classify",
    "LabelScore": "clipfind.search.zeroshot.classify",
    "LabelRunSummary": "clipfind.search.zeroshot.labeling",
    "LabelSetInfo": "clipfind.search.zeroshot.labeling",
    "DetectResult": "clipfind.search.detect.picture",
    "Detection": "clipfind.search.detect.detector",
    "Box": "clipfind.search.detect.detector",
    "CollectionInfo": "clipfind.search.info",
    "ClipfindError": "clipfind.errors",
    "ClusterError": "clipfind.errors",
    "CollectionError": "clipfind.errors",
    "ImageDecodeError": "clipfind.errors",
    "ModelLoadError": "clipfind.errors",
    "ModelMismatchError": "clipfind.errors",
    "NotFoundError": "clipfind.errors",
    "QueryError": "clipfind.errors",
}
__all__ = [  # noqa: RUF022  (grouped as above)
    "__version__", "open", "Clipfind", "Settings", "Encoder", "ClipEncoder",
    "SearchPage", "Hit", "Filters", "TextHit", "TextIndexSummary", "IndexSummary",
    "Classification", "LabelScore", "LabelRunSummary", "LabelSetInfo",
    "DetectResult", "Detection", "Box", "CollectionInfo",
    "ClipfindError", "ClusterError", "CollectionError", "ImageDecodeError", "ModelLoadError",
    "ModelMismatchError", "NotFoundError", "QueryError",
]

if TYPE_CHECKING:
    from clipfind.config import Settings
    from clipfind.encoder import ClipEncoder
    from clipfind.encoding import Encoder
    from clipfind.errors import (
        ClipfindError,
        ClusterError,
        CollectionError,
        ImageDecodeError,
        ModelLoadError,
        ModelMismatchError,
        NotFoundError,
        QueryError,
    )
    from clipfind.indexer.run import IndexSummary
    from clipfind.library import Clipfind, open
    from clipfind.search.detect.detector import Box, Detection
    from clipfind.search.detect.picture import DetectResult
    from clipfind.search.engine import Hit, SearchPage
    from clipfind.search.filters import Filters
    from clipfind.search.info import CollectionInfo
    from clipfind.search.texts import TextHit, TextIndexSummary
    from clipfind.search.zeroshot.classify import Classification, LabelScore
    from clipfind.search.zeroshot.labeling import LabelRunSummary, LabelSetInfo


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clipfind' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
