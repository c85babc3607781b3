"""Thumbnails: decoded with the safe decoder (EXIF-rotated, JPEG draft mode), cached on
disk under the collection's cache dir, keyed by content hash so an edited photo gets a
fresh one. Writes are atomic; two requests racing for one thumbnail both succeed."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from PIL import Image

from clipfind.errors import ImageDecodeError, NotFoundError
from clipfind.imageio import decode_image, open_indexed
from clipfind.store import Item

SIZES = (64, 128, 256, 384, 512, 768, 1024)


def snap_size(size: int) -> int:
    """The smallest cached size >= ``size`` (so the cache holds a few sizes, not any)."""
    return next((s for s in SIZES if s >= size), SIZES[-1])


class ThumbnailCache:
    def __init__(self, folder: Path, max_pixels: int) -> None:
        self.folder = folder
        self.max_pixels = max_pixels

    def path_for(self, item: Item, size: int) -> Path:
        key = (item.content_hash or f"{item.size}-{item.mtime_ns}")[:16]
        return self.folder / str(size) / f"{item.id}-{key}.jpg"

    def cached(self, item: Item, size: int) -> Path | None:
        """The thumbnail file if it is made already (cheap: no decoding)."""
        path = self.path_for(item, snap_size(size))
        # The original is checked even when a thumbnail is cached: an item whose file is
        # gone or replaced is answered the same way on every URL.
        open_indexed(Path(item.path), item.size, item.mtime_ns, f"item #{item.id}").close()
        return path if path.is_file() else None

    def get(self, item: Item, size: int) -> Path:
        """The thumbnail file of ``item`` at the snapped ``size``, made if needed."""
        size = snap_size(size)
        path = self.path_for(item, size)
        with open_indexed(Path(item.path), item.size, item.mtime_ns, f"item #{item.id}") as f:
            if path.is_file():
                return path
            try:
                data = f.read()
            except OSError as exc:
                raise NotFoundError(f"item #{item.id}'s file is unreadable; re-index") from exc
        try:
            image = decode_image(data, size, self.max_pixels, name=f"item #{item.id}").image
        except ImageDecodeError as exc:
            raise NotFoundError(f"item #{item.id} can no longer be decoded: {exc}") from exc
        image.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            image.save(tmp, "JPEG", quality=82, optimize=True)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path
