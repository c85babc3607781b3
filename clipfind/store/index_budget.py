"""Choosing an index from a memory budget, as autofaiss does (``get_optimal_index_keys_v2``):
the whole index must fit the budget, so the least lossy kind that fits wins.

* ``flat`` while the collection is small (exact search, :data:`FLAT_LIMIT`) and fits;
* ``ivf-sq8`` in memory (one byte a dimension) while that fits;
* otherwise ``ivf-pq`` with on-disk inverted lists, memory-mapped: the largest product
  code (bytes a vector) that fits, with an OPQ rotation in front (it pays on CLIP-like
  vectors: docs/performance.md). Below :data:`MIN_PQ_BYTES` recall collapses, so a budget
  too small for that is refused with a clear message instead of serving poor results.

Sizes count the codes, the 8-byte ids stored beside them in the inverted lists, and the
trained parts (centroids, codebooks, rotation).
"""

from __future__ import annotations

import math

from clipfind.config import parse_memory  # noqa: F401  (re-exported: the size syntax)
from clipfind.errors import StorageError

FLAT_LIMIT = 40_000  # beyond this a flat scan costs more than ~4 ms per query on 2 cores
ID_BYTES = 8
PQ_BYTES = (256, 128, 96, 64, 48, 32)  # bytes a vector, largest (most exact) first
MIN_PQ_BYTES = PQ_BYTES[-1]


def nlist_for(n: int) -> int:
    """About ``2·sqrt(n)`` lists (a power of two), at least 39 points each, at most 16k."""
    nlist = 2 ** round(math.log2(max(16.0, 2.0 * math.sqrt(max(n, 1)))))
    return int(min(nlist, 16_384, max(16, n // 39)))


def pq_bytes_for(dim: int) -> list[int]:
    """Code sizes usable at ``dim``: they divide it, and leave at least 2 dims a byte."""
    return [m for m in PQ_BYTES if dim % m == 0 and m <= dim // 2]


def index_bytes(kind: str, n: int, dim: int, m: int = 0) -> int:
    """Bytes of an index of ``kind`` over ``n`` vectors (codes, ids, trained parts)."""
    if kind == "flat":
        return n * (4 * dim + ID_BYTES)
    centroids = nlist_for(n) * dim * 4
    if kind == "ivf-sq8":
        return n * (dim + ID_BYTES) + centroids + 2 * dim * 4
    if kind == "ivf-pq":
        return n * (m + ID_BYTES) + centroids + 256 * dim * 4 + dim * dim * 4
    raise ValueError(f"no size model for index kind {kind!r}")


def budget_choice(n: int, dim: int, budget: int) -> tuple[str, int]:
    """``(kind, pq_bytes)`` for ``n`` vectors of ``dim`` under ``budget`` bytes."""
    if n <= FLAT_LIMIT and index_bytes("flat", n, dim) <= budget:
        return "flat", 0
    if index_bytes("ivf-sq8", n, dim) <= budget:
        return "ivf-sq8", 0
    for m in pq_bytes_for(dim):
        if index_bytes("ivf-pq", n, dim, m) <= budget:
            return "ivf-pq", m
    smallest = min(pq_bytes_for(dim) or [MIN_PQ_BYTES])
    need = index_bytes("ivf-pq", n, dim, smallest)
    raise StorageError(
        f"An index of {n:,} vectors ({dim}-d) needs at least {need / 1e9:.2f} GB "
        f"({smallest + ID_BYTES} bytes a vector); the index memory budget is "
        f"{budget / 1e9:.2f} GB. Raise --index-memory (CLIPFIND_INDEX_MEMORY)."
    )
