"""``search --locate``: boxes for the query's text in each search result."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clipfind.errors import ClipfindError, QueryError
from clipfind.search.detect.detector import Detection
from clipfind.search.detect.picture import detect_picture, load_picture
from clipfind.search.engine import Hit
from clipfind.search.query import Term

if TYPE_CHECKING:
    from clipfind.encoding import Encoder

log = logging.getLogger(__name__)


def locate_texts(terms: Sequence[Term]) -> list[str]:
    """The texts to look for: the query's positive text terms."""
    texts = [t.text for t in terms if t.text and t.weight > 0]
    if not texts:
        raise QueryError("--locate needs a text term in the query (it boxes where the text "
                         "appears); example images alone cannot be located")
    return list(dict.fromkeys(texts))


def locate_hits(encoder: Encoder, hits: Sequence[Hit], texts: list[str],
                threshold: float | None = None, max_boxes: int = 5,
                max_pixels: int = 150_000_000) -> dict[int, list[Detection]]:
    """Detections of ``texts`` in each hit's image, by item id. An image that can no
    longer be read gets no boxes (logged), never an error for the whole page. Boxes
    follow :func:`clipfind.search.detect.picture.detect_picture`'s size policy."""
    out: dict[int, list[Detection]] = {}
    for hit in hits:
        try:
            picture = load_picture(Path(hit.path), max_pixels)
        except ClipfindError as exc:
            log.warning("cannot locate in %s: %s", hit.path, exc)
            out[hit.id] = []
            continue
        out[hit.id] = detect_picture(encoder, picture, texts, threshold, max_boxes).detections
    return out
