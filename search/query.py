"""Query syntax and query vectors.

A query is a weighted sum of terms, rclip-style::

    "2:golden retriever + beach.jpg - leash + #42"

* terms are separated by `` + `` or `` - `` (spaces around the sign);
* ``W:`` before a term weights it (default 1);
* a term ending in an image extension (or starting with ``/``, ``./``, ``../``, ``~/``)
  names an example image file, which must exist; ``#N`` is an indexed item;
* anything else is text.

The query vector is the normalised sum of weighted, normalised term vectors; negative
terms pull the result away from what they describe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder
from clipfind.errors import NotFoundError, QueryError
from clipfind.imageio import IMAGE_EXTENSIONS, load_image

_SPLIT = re.compile(r"\s+([+-])\s+")
_WEIGHT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*:\s*(.+)$")
_ITEM = re.compile(r"^#(\d+)$")


@dataclass(frozen=True)
class Term:
    """One part of a query: exactly one of ``text``, ``image`` or ``item_id``."""

    weight: float = 1.0
    text: str | None = None
    image: Path | None = None
    item_id: int | None = None
    image_bytes: bytes | None = None  # an uploaded example (API)

    def describe(self) -> str:
        what = self.text or (str(self.image) if self.image else None)
        what = what or (f"#{self.item_id}" if self.item_id is not None else "uploaded image")
        return f"{self.weight:g}:{what}"


def parse_term(raw: str, weight: float = 1.0, allow_files: bool = True) -> Term:
    """One term; ``allow_files=False`` (the HTTP API) never treats text as a path."""
    raw = raw.strip()
    m = _WEIGHT.match(raw)
    if m:
        weight *= float(m.group(1))
        raw = m.group(2).strip()
    if not raw:
        raise QueryError("empty query term")
    item = _ITEM.match(raw)
    if item:
        return Term(weight, item_id=int(item.group(1)))
    if not allow_files:
        return Term(weight, text=raw)
    path = Path(raw).expanduser()
    if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
        return Term(weight, image=path)
    if _names_a_file(raw):  # a misspelt file must not quietly become a text query
        why = ("a term ending in an image extension or starting with /, ./, ../ or ~/ "
               "names an example image")
        if path.exists():
            raise QueryError(f"{raw!r} is not an image file: {why}")
        raise NotFoundError(f"{raw!r} does not exist: {why}")
    return Term(weight, text=raw)


def _names_a_file(raw: str) -> bool:
    """``beach.jpg``, ``~/ref.png`` and ``./shots/a`` name files; ``AC/DC`` is words."""
    return (Path(raw).suffix.lower() in IMAGE_EXTENSIONS
            or raw.startswith(("/", "./", "../", "~/")))


def parse_query(text: str, allow_files: bool = True) -> list[Term]:
    """Parse the rclip-style syntax above into terms."""
    text = text.strip()
    if not text:
        return []
    sign = 1.0
    if text.startswith("- "):
        sign, text = -1.0, text[2:]
    parts = _SPLIT.split(text)
    terms = [parse_term(parts[0], sign, allow_files)]
    for op, raw in zip(parts[1::2], parts[2::2], strict=True):
        terms.append(parse_term(raw, 1.0 if op == "+" else -1.0, allow_files))
    return terms


def build_terms(
    text: str | None = None,
    images: Sequence[str] = (),
    negatives: Sequence[str] = (),
) -> list[Term]:
    """Terms from the CLI/API's separate fields: a query string, example images (paths
    or ``#id``/``id:N``) and ``not`` texts."""
    terms = parse_query(text) if text else []
    for raw in images:
        ref = raw.strip()
        if ref.startswith("id:"):
            ref = "#" + ref[3:]
        term = parse_term(ref)
        if term.text is not None:
            raise QueryError(f"--image {raw!r} is neither an image file nor an item id (#N)")
        terms.append(term)
    terms.extend(parse_term(n, -1.0) for n in negatives)
    return terms


def query_vector(terms: Sequence[Term], encoder: Encoder, catalog: object,
                 max_pixels: int = 150_000_000) -> npt.NDArray[np.float32]:
    """The normalised weighted sum of the terms' vectors."""
    if not terms:
        raise QueryError("the query is empty: give text, an example image or an item id")
    if all(t.weight <= 0 for t in terms):
        raise QueryError("a query needs at least one positive term")
    texts = [t.text for t in terms if t.text is not None]
    text_vecs = dict(zip(texts, encoder.encode_texts(texts), strict=True)) if texts else {}  # type: ignore[attr-defined]
    total = None
    for term in terms:
        vec = _term_vector(term, encoder, catalog, text_vecs, max_pixels)
        total = term.weight * vec if total is None else total + term.weight * vec
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the query's terms cancel out; change the weights")
    return (total / norm).astype(np.float32)


def _term_vector(term: Term, encoder, catalog, text_vecs, max_pixels):  # type: ignore[no-untyped-def]
    from clipfind.imageio import decode_image

    if term.text is not None:
        return text_vecs[term.text]
    if term.item_id is not None:
        vec = catalog.vector_of(term.item_id)
        if vec is None:
            raise NotFoundError(f"item #{term.item_id} is not in the collection")
        return vec
    if term.image_bytes is not None:
        decoded = decode_image(term.image_bytes, encoder.image_size, max_pixels, "upload")
    else:
        decoded = load_image(term.image, encoder.image_size, max_pixels)
    return encoder.encode_images([decoded.image])[0]
