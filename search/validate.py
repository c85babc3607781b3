"""What a search can refuse before its model loads.

Loading a model takes seconds; a query that names a missing item, an undecodable
example image or a label no set gives is refused first, with the error the user would
get anyway (``NotFoundError``, ``ImageDecodeError``, ``QueryError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clipfind.errors import NotFoundError, QueryError
from clipfind.imageio import DEFAULT_MAX_PIXELS, decode_image, load_image
from clipfind.search.filters import Filters
from clipfind.search.query import Term

# A check decode only has to read the whole stream: JPEG draft mode makes it cheap.
_CHECK_SIDE = 64


def check_search(catalog: Any, terms: Sequence[Term], filters: Filters | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse a search whose terms or label filter cannot be answered."""
    check_terms(terms, catalog, max_pixels)
    if filters is not None and filters.label:
        check_label(catalog, filters.label)


def check_terms(terms: Sequence[Term], catalog: Any | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """At least one positive term; example images decode; items exist."""
    if not terms:
        raise QueryError("the query is empty: give text, an example image or an item id")
    if all(t.weight <= 0 for t in terms):
        raise QueryError("a query needs at least one positive term: 'beach - dog', not "
                         "'- dog' alone")
    for term in terms:
        if term.image is not None:
            load_image(term.image, _CHECK_SIDE, max_pixels)
        elif term.image_bytes is not None:
            decode_image(term.image_bytes, _CHECK_SIDE, max_pixels, "upload")
        elif (term.item_id is not None and catalog is not None
              and catalog.vector_of(term.item_id) is None):
            raise NotFoundError(f"item #{term.item_id} is not in the collection")


def check_picture(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse bytes that do not decode as a picture (a cheap draft decode)."""
    decode_image(data, _CHECK_SIDE, max_pixels, name)


def check_label(catalog: Any, spec: str) -> None:
    """``LABEL`` must be a label of some stored set, ``SET:LABEL`` one of that set's
    (a label no item received is fine: the search then finds nothing)."""
    from clipfind.search.zeroshot.labeling import list_label_sets

    sets = {s.name: s.labels for s in list_label_sets(catalog)}
    set_name, sep, label = spec.partition(":")
    if not sep:
        if not any(spec in labels for labels in sets.values()):
            raise NotFoundError(f"no label set has the label {spec!r} (clipfind labels list "
                                "shows the sets; clipfind label makes one)")
        return
    if set_name not in sets:
        raise NotFoundError(f"no label set named {set_name!r} (clipfind labels list)")
    if label not in sets[set_name]:
        shown = ", ".join(sets[set_name][:20])
        raise NotFoundError(f"label set {set_name!r} has no label {label!r}; its labels: {shown}")
