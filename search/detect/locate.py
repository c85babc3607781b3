"""``search --locate``: boxes for the query's text in each search result."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipfind.errors import ClipfindError, NotFoundError, QueryError
from clipfind.search.detect.detector import Detection
from clipfind.search.detect.picture import detect_picture, load_indexed_picture
from clipfind.search.engine import Hit
from clipfind.search.query import Term

if TYPE_CHECKING:
    from clipfind.encoding import Encoder
    from clipfind.search.detect.choice import Detector

log = logging.getLogger(__name__)


def locate_texts(terms: Sequence[Term]) -> list[str]:
    """The texts to look for: the query's positive text terms."""
    texts = [t.text for t in terms if t.text and t.weight > 0]
    if not texts:
        raise QueryError("--locate needs a text term or an example image in the query (it "
                         "boxes where the text appears, or things like the example)")
    return list(dict.fromkeys(texts))


def locate_example(terms: Sequence[Term]) -> Path | int | bytes | None:
    """A query of example images alone is located by example (OWL's image-guided
    detection): its first positive image. ``None`` when the query has a text term."""
    if any(t.text and t.weight > 0 for t in terms):
        return None
    for t in terms:
        if t.weight > 0 and not t.text:
            for ref in (t.image, t.item_id, t.image_bytes):
                if ref is not None:
                    return ref
    return None


def locate_hits(encoder: Encoder | None, hits: Sequence[Hit], texts: list[str],
                threshold: float | None = None, max_boxes: int = 5,
                max_pixels: int = 150_000_000,
                detector: Detector | None = None, *, catalog: Any) -> dict[int, list[Detection]]:
    """Detections of ``texts`` in each hit's image, by item id. Each file is opened only
    if it is still the file indexed (``catalog`` holds its size and mtime); one that has
    changed, gone or been swapped for a link elsewhere gets no boxes (logged with the
    reason), never an error for the whole page. Boxes follow
    :func:`clipfind.search.detect.picture.detect_picture`'s size policy."""
    out: dict[int, list[Detection]] = {}
    items = catalog.get_items([hit.id for hit in hits])
    for hit in hits:
        try:
            item = items.get(hit.id)
            if item is None:
                raise NotFoundError(f"item #{hit.id} is no longer in the collection")
            picture = load_indexed_picture(item, max_pixels)
        except ClipfindError as exc:
            log.warning("cannot locate in %s: %s", hit.path, exc)
            out[hit.id] = []
            continue
        out[hit.id] = detect_picture(encoder, picture, texts, threshold, max_boxes,
                                     detector).detections
    return out
