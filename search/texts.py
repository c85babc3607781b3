"""Texts held by a collection (captions, product descriptions, vocabularies) and
image → text retrieval over them.

Texts are ranked by an exact matrix product, not FAISS: text collections are small
next to photo collections (100,000 texts × 512 dims is 200 MB and one product is a few
milliseconds), exact ranking needs no training or rebuild, and the same scoring code
serves zero-shot classification (``search.scoring.rank_rows``). The vectors are read
from the catalog once and kept while the texts do not change.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder
from clipfind.errors import NotFoundError, QueryError
from clipfind.search.zeroshot.scoring import rank_rows
from clipfind.store.catalog import vector_to_bytes

_BATCH = 256
_TEXT_COLUMNS = ("text", "caption", "description", "label")
_KEY_COLUMNS = ("id", "key", "image_id")


@dataclass(frozen=True)
class TextHit:
    id: int
    key: str | None
    text: str
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "key": self.key, "text": self.text, "score": self.score}


@dataclass(frozen=True)
class TextIndexSummary:
    added: int
    updated: int
    removed: int
    total: int

    def as_dict(self) -> dict[str, int]:
        return {"added": self.added, "updated": self.updated, "removed": self.removed,
                "total": self.total}


def read_texts_file(path: Path) -> list[tuple[str | None, str]]:
    """``(key, text)`` pairs: plain text (one per line), CSV with a header (a ``text``
    or ``caption`` column, an optional ``id`` column) or JSON Lines (``{"id", "text"}``)."""
    path = Path(path).expanduser()
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise NotFoundError(f"texts file {path} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise QueryError(f"cannot read texts file {path}: {exc}") from exc
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        pairs = [_from_json(line, path, n) for n, line in enumerate(raw.splitlines(), 1)
                 if line.strip()]
    elif suffix == ".csv":
        pairs = _from_csv(raw, path)
    else:
        pairs = [(None, line.strip()) for line in raw.splitlines() if line.strip()]
    pairs = [(k, t) for k, t in pairs if t]
    if not pairs:
        raise QueryError(f"{path}: no texts found")
    return pairs


def _from_json(line: str, path: Path, n: int) -> tuple[str | None, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise QueryError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
    if isinstance(obj, str):
        return None, obj.strip()
    if not isinstance(obj, dict):
        raise QueryError(f"{path}:{n}: expected an object with a 'text' field")
    text = next((obj[c] for c in _TEXT_COLUMNS if c in obj), None)
    if not isinstance(text, str):
        raise QueryError(f"{path}:{n}: no 'text' field")
    key = next((obj[c] for c in _KEY_COLUMNS if c in obj), None)
    return (None if key is None else str(key)), text.strip()


def _from_csv(raw: str, path: Path) -> list[tuple[str | None, str]]:
    reader = csv.DictReader(io.StringIO(raw))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    text_col = next((c for c in _TEXT_COLUMNS if c in fields), None)
    if text_col is None:
        raise QueryError(f"{path}: the CSV needs a header with a 'text' (or 'caption') column")
    key_col = next((c for c in _KEY_COLUMNS if c in fields), None)
    names = dict(zip(fields, reader.fieldnames or [], strict=True))
    return [(row.get(names[key_col]) if key_col else None, (row.get(names[text_col]) or "").strip())
            for row in reader]


def _key(key: str | None, text: str) -> str:
    return key if key is not None else "sha:" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def index_texts(collection: Any, encoder: Encoder, pairs: Sequence[tuple[str | None, str]],
                replace: bool = False) -> TextIndexSummary:
    """Encode and store texts; a text with a known key (its id, else its content)
    is updated in place. ``replace`` drops every text not in ``pairs``.

    Texts are their own table: an index run on the items may go on meanwhile, but two
    text runs at once would race on the same keys, so this claims the texts."""
    with collection.writing_texts():
        return _index_texts_locked(collection, encoder, pairs, replace)


def _index_texts_locked(collection: Any, encoder: Encoder, pairs: Sequence[tuple[str | None, str]],
                        replace: bool) -> TextIndexSummary:
    collection.bind_model(encoder)
    store = collection.catalog.texts
    wanted = dict((_key(k, t)[:200], t) for k, t in pairs)
    existing = store.keys()
    items = list(wanted.items())
    for start in range(0, len(items), _BATCH):
        batch = items[start : start + _BATCH]
        vecs = encoder.encode_texts([t for _, t in batch])
        store.upsert([(existing.get(key), key, text, vector_to_bytes(vec))
                      for (key, text), vec in zip(batch, vecs, strict=True)],
                     model=collection.stored_model or encoder.spec)
    updated = sum(1 for key in wanted if key in existing)
    added = len(wanted) - updated
    removed = 0
    if replace:
        gone = [i for k, i in existing.items() if k not in wanted]
        store.remove(gone)
        removed = len(gone)
    total = len(set(existing) | set(wanted)) - removed
    return TextIndexSummary(added, updated, removed, total)


_matrix_cache: dict[str, tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
_matrix_lock = threading.Lock()


def _text_matrix(catalog: Any) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    generation = catalog.texts.generation
    with _matrix_lock:
        hit = _matrix_cache.get(catalog.url)
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2]
    ids, vecs = catalog.texts.vectors()
    with _matrix_lock:
        _matrix_cache[catalog.url] = (generation, ids, vecs)
    return ids, vecs


def search_texts(collection: Any, vector: npt.NDArray[np.float32], k: int = 20) -> list[TextHit]:
    """The collection's texts closest to a query vector (an image's, usually), best
    first, with their cosine similarity."""
    if k < 1:
        raise QueryError("k must be at least 1")
    ids, matrix = _text_matrix(collection.catalog)
    if len(ids) == 0:
        raise QueryError("the collection holds no texts: add some with `clipfind index-texts FILE`")
    texts_model = collection.catalog.texts.model
    stale = texts_model is not None and texts_model != collection.stored_model
    if stale or matrix.shape[1] != np.asarray(vector).reshape(-1).shape[0]:
        raise QueryError("the texts were embedded with another model: run index-texts again")
    scores, idx = rank_rows(vector, matrix, k)
    picked = [int(ids[i]) for i in idx]
    rows = collection.catalog.texts.get(picked)
    return [TextHit(i, rows[i].key, rows[i].text, round(float(s), 6))
            for i, s in zip(picked, scores, strict=True) if i in rows]
