"""The reader/mapper stage: one file in, one :class:`Prepared` out. Runs in worker
threads (PIL and hashing release the GIL), so decoding overlaps with encoding."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipfind.errors import ImageDecodeError
from clipfind.imageio import ImageInfo, content_hash, decode_image, read_bytes
from clipfind.indexer.walk import FileEntry
from clipfind.store.status import ItemStatus

if TYPE_CHECKING:  # a Ray read worker imports this module without the catalog
    from clipfind.store.catalog import Catalog, ItemState, VectorSource

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
        transform: Callable[[Any], Any] | None,
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
        try:
            data = read_bytes(Path(entry.path))
        except ImageDecodeError as exc:  # vanished, permission, I/O: may pass
            return self.unreadable(entry, str(exc))
        digest = content_hash(data)
        planned = self.plan(entry, digest)
        if planned is not None:
            return planned
        assert self.transform is not None, "a Preparer that decodes needs the transform"
        return self.decoded(entry, digest, *decode_pixels(
            data, entry.path, self.transform, self.target_size, self.max_pixels))

    def unreadable(self, entry: FileEntry, reason: str) -> Prepared:
        """A file that could not be read now: skipped, and tried again next run."""
        old = self.existing.get(entry.path)
        return Prepared(entry, SKIPPED, old.id if old else None, reason=reason, retry=True)

    def plan(self, entry: FileEntry, digest: str) -> Prepared | None:
        """What a file with content ``digest`` needs without decoding (touch, move,
        duplicate), or None: it must be decoded and encoded."""
        old = self.existing.get(entry.path)
        existing_id = old.id if old else None
        if old is not None and old.content_hash == digest and old.status == ItemStatus.OK:
            return Prepared(entry, TOUCHED, existing_id, content_hash=digest)
        if old is None:
            moved = self._claim_move(digest)
            if moved is not None:
                return Prepared(entry, MOVED, None, moved.id, digest)
        donor = self.catalog.vector_source(digest)
        if donor is not None and donor.id != existing_id:
            return Prepared(entry, DUPLICATE, existing_id, donor.id, digest, donor=donor)
        return None

    def decoded(self, entry: FileEntry, digest: str, pixels: Any, info: ImageInfo | None,
                reason: str | None) -> Prepared:
        """A file :meth:`plan` left to decode, with what :func:`decode_pixels` made of it."""
        old = self.existing.get(entry.path)
        existing_id = old.id if old else None
        if reason is not None:
            return Prepared(entry, SKIPPED, existing_id, content_hash=digest, reason=reason)
        return Prepared(entry, CHANGED if old else NEW, existing_id, None, digest, pixels, info)

    def _claim_move(self, digest: str) -> ItemState | None:
        with self._claim_lock:
            state = self.missing_by_hash.pop(digest, None)
            if state is not None:
                self.claimed.add(state.id)
            return state


def decode_pixels(data: bytes, path: str, transform: Callable[[Any], Any], target_size: int,
                  max_pixels: int) -> tuple[Any, ImageInfo | None, str | None]:
    """One file's bytes → ``(model input, image facts, None)``, or ``(None, None, reason)``
    when it cannot be decoded. Needs no catalog: Ray workers run it too."""
    try:
        decoded = decode_image(data, target_size, max_pixels, name=path)
        pixels = transform(decoded.image)
    except ImageDecodeError as exc:
        return None, None, _short(exc)
    except Exception as exc:  # a transform failure on a weird image is still one file
        return None, None, f"cannot preprocess: {exc}"
    return pixels, decoded.info, None


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
