"""The reader/mapper stage: one file in, one :class:`Prepared` out. Runs in worker
threads (PIL and hashing release the GIL), so decoding overlaps with encoding."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfind.errors import ImageDecodeError
from clipfind.imageio import ImageInfo, content_hash, decode_image, read_bytes
from clipfind.indexer.walk import FileEntry
from clipfind.store.catalog import Catalog, ItemState, VectorSource
from clipfind.store.status import ItemStatus

# What happened to a file, decided before or instead of decoding it.
NEW, CHANGED, MOVED, TOUCHED, DUPLICATE, SKIPPED = (
    "new", "changed", "moved", "touched", "duplicate", "skipped"
)


@dataclass
class Prepared:
    entry: FileEntry
    action: str
    existing_id: int | None = None  # catalog row for this path, if any
    source_id: int | None = None  # moved: the row to re-point; duplicate: vector donor
    content_hash: str | None = None
    pixels: Any = None  # preprocessed tensor, for NEW/CHANGED
    info: ImageInfo | None = None
    reason: str | None = None
    # duplicate of an item indexed before this run: its vector as of planning time (the
    # donor's row may get another photo's vector later in the same run)
    donor: VectorSource | None = None
    retry: bool = False  # skipped for a passing reason: the next run tries again


class Preparer:
    """Decides per file: move, touch, duplicate, decode, or skip with a reason."""

    def __init__(
        self,
        catalog: Catalog,
        existing: dict[str, ItemState],
        missing_by_hash: dict[str, ItemState],
        transform: Callable[[Any], Any],
        target_size: int,
        max_pixels: int,
    ) -> None:
        self.catalog = catalog
        self.existing = existing
        self.missing_by_hash = missing_by_hash
        self.transform = transform
        self.target_size = target_size
        self.max_pixels = max_pixels
        self._claim_lock = threading.Lock()
        self.claimed: set[int] = set()  # ids of rows re-pointed to a moved file

    def __call__(self, entry: FileEntry) -> Prepared:
        old = self.existing.get(entry.path)
        existing_id = old.id if old else None
        action = CHANGED if old else NEW
        try:
            data = read_bytes(Path(entry.path))
        except ImageDecodeError as exc:  # vanished, permission, I/O: may pass
            return Prepared(entry, SKIPPED, existing_id, reason=str(exc), retry=True)
        digest = content_hash(data)
        if old is not None and old.content_hash == digest and old.status == ItemStatus.OK:
            return Prepared(entry, TOUCHED, existing_id, content_hash=digest)
        if old is None:
            moved = self._claim_move(digest)
            if moved is not None:
                return Prepared(entry, MOVED, None, moved.id, digest)
        donor = self.catalog.vector_source(digest)
        if donor is not None and donor.id != existing_id:
            return Prepared(entry, DUPLICATE, existing_id, donor.id, digest, donor=donor)
        try:
            decoded = decode_image(data, self.target_size, self.max_pixels, name=entry.path)
            pixels = self.transform(decoded.image)
        except ImageDecodeError as exc:
            return Prepared(entry, SKIPPED, existing_id, content_hash=digest, reason=_short(exc))
        except Exception as exc:  # a transform failure on a weird image is still one file
            return Prepared(entry, SKIPPED, existing_id, content_hash=digest,
                            reason=f"cannot preprocess: {exc}")
        return Prepared(entry, action, existing_id, None, digest, pixels, decoded.info)

    def _claim_move(self, digest: str) -> ItemState | None:
        with self._claim_lock:
            state = self.missing_by_hash.pop(digest, None)
            if state is not None:
                self.claimed.add(state.id)
            return state


def mark_repeat(p: Prepared, first_seen: set[str]) -> None:
    """In run order: a decoded file whose content an earlier file of this run already
    brought becomes a duplicate of it, so identical files are encoded once. (Done in
    order, not in the decode threads, so the first file is always written first.)"""
    if p.pixels is None or p.content_hash is None:
        return
    if p.content_hash in first_seen:
        p.action, p.pixels, p.source_id, p.donor = DUPLICATE, None, None, None
    else:
        first_seen.add(p.content_hash)


def _short(exc: ImageDecodeError) -> str:
    # The path is already in the report's row; keep the reason itself.
    text = str(exc)
    head, sep, tail = text.partition(": ")
    return tail if sep and head.startswith("/") else text
