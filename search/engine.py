"""Search: a query becomes a vector, FAISS ranks, the catalog fills in the details."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder
from clipfind.errors import QueryError
from clipfind.search.filters import Filters, allowed_ids
from clipfind.search.query import Term, query_vector
from clipfind.store.collection import Collection
from clipfind.store.vectors import VectorIndex

MAX_K = 1000


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    score: float
    width: int | None = None
    height: int | None = None
    taken_at: datetime | None = None
    camera: str | None = None

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["taken_at"] = self.taken_at.isoformat() if self.taken_at else None
        return out


@dataclass(frozen=True)
class SearchPage:
    hits: list[Hit]
    offset: int
    k: int
    query: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"query": self.query, "offset": self.offset, "k": self.k,
                "results": [h.as_dict() for h in self.hits]}


def search(
    collection: Collection,
    encoder: Encoder,
    terms: Sequence[Term],
    k: int = 20,
    offset: int = 0,
    filters: Filters | None = None,
    min_score: float | None = None,
) -> SearchPage:
    """Rank the collection's images for a query. Results are ordered by score, ties by
    id, so pages are stable; filters apply before top-k."""
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must be between 1 and {MAX_K}")
    if offset < 0:
        raise QueryError("offset must be >= 0")
    from clipfind.search.validate import check_search

    # refuse what can be refused before the model loads (seconds)
    check_search(collection.catalog, terms, filters, collection.settings.max_pixels)
    needs_model = any(t.item_id is None for t in terms)
    if needs_model:
        collection.bind_model(encoder)
    vec = query_vector(terms, encoder, collection.catalog, collection.settings.max_pixels)
    return search_vector(collection, vec, k, offset, filters, min_score,
                         [t.describe() for t in terms])


def search_vector(
    collection: Collection,
    vec: npt.NDArray[np.float32],
    k: int = 20,
    offset: int = 0,
    filters: Filters | None = None,
    min_score: float | None = None,
    described: list[str] | None = None,
) -> SearchPage:
    index = collection.vector_index()
    allowed = allowed_ids(collection.catalog, filters or Filters())
    picked = ranked_page(index, vec, k, offset, allowed)
    if min_score is not None:
        picked = [(i, s) for i, s in picked if s >= min_score]
    items = collection.catalog.get_items(i for i, _ in picked)
    hits = [
        Hit(i, it.path, round(s, 6), it.width, it.height, it.taken_at, it.camera)
        for i, s in picked
        if (it := items.get(i)) is not None
    ]
    return SearchPage(hits, offset, k, described or [])


def _tie_key(score: float) -> float:
    return round(score, 6)  # the score a hit shows: equal shown scores are ties


def ranked_page(
    index: VectorIndex,
    vec: npt.NDArray[np.float32],
    k: int,
    offset: int = 0,
    allowed: npt.NDArray[np.int64] | None = None,
) -> list[tuple[int, float]]:
    """``(id, score)`` of ranks ``offset`` .. ``offset + k`` in the order (score, then
    id), so pages partition the ranking however many items tie. FAISS keeps an
    arbitrary subset of the items tied at its cut-off, so the search widens until the
    last candidate scores below the page's last item: then every item that ties with
    the page's edge is among the candidates, and sorting them by id is exact."""
    want = offset + k + 1
    while True:
        scores, ids = index.search(vec, want, allowed)
        order = sorted(zip(scores.tolist(), ids.tolist(), strict=True),
                       key=lambda p: (-_tie_key(p[0]), p[1]))
        exhausted = len(ids) < want
        edge = min(offset + k, len(order)) - 1
        if exhausted or edge < 0 or _tie_key(float(scores.min())) < _tie_key(order[edge][0]):
            return [(int(i), float(s)) for s, i in order[offset : offset + k]]
        want *= 2
