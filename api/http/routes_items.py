"""Items by id: metadata, the original file and cached thumbnails. Only files the
indexer accepted are ever served; URLs carry ids, never paths."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from clipfind.api.http.deps import CollectionDep, StateDep
from clipfind.api.http.models import MAX_ID, ItemLabelOut, ItemOut
from clipfind.errors import NotFoundError
from clipfind.imageio import open_indexed
from clipfind.store import Item, ItemStatus
from clipfind.store.collection import Collection

router = APIRouter(tags=["items"])
# The browser may keep an original or a thumbnail for a day; ids are never reused and
# thumbnails are keyed by content, so a stale copy can only be a few hours' edit late.
_CACHE = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}


def indexed_item(item_id: int, collection: CollectionDep) -> Item:
    """The indexed item ``item_id``, or 404 (unknown ids and skipped files alike)."""
    item = collection.catalog.get_item(item_id) if 0 < item_id < MAX_ID else None
    if item is None or item.status != ItemStatus.OK:
        raise NotFoundError(f"item #{item_id} is not in the collection")
    return item


ItemDep = Annotated[Item, Depends(indexed_item)]


def item_labels(collection: Collection, item_id: int) -> list[ItemLabelOut]:
    return [ItemLabelOut(set=r.set, label=r.label, score=round(r.score, 6))
            for r in collection.catalog.labels.of_item(item_id)]


# `{item_id:int}`: anything but digits (e.g. an encoded '../') matches no route → 404.
@router.get("/items/{item_id:int}", response_model=ItemOut, summary="An item's metadata")
def get_item(item: ItemDep, collection: CollectionDep) -> ItemOut:
    """Metadata of an indexed image, with the labels label sets gave it."""
    return ItemOut(
        id=item.id, path=item.path, name=Path(item.path).name, size=item.size,
        width=item.width, height=item.height, taken_at=item.taken_at, camera=item.camera,
        format=item.format, indexed_at=item.indexed_at,
        labels=item_labels(collection, item.id),
        thumbnail=f"/items/{item.id}/thumbnail", image=f"/items/{item.id}/image",
    )


def _chunks(f: BinaryIO, size: int = 256 * 1024) -> Iterator[bytes]:
    with f:
        while chunk := f.read(size):
            yield chunk


@router.get(
    "/items/{item_id:int}/image", response_class=StreamingResponse, summary="The original file",
    responses={200: {"content": {"image/*": {}}, "description": "The image file as indexed."}},
)
def get_image(item: ItemDep) -> StreamingResponse:
    """The original file of an indexed image: 404 when it is gone from disk, 409 when
    it is no longer the file that was indexed (until its folder is indexed again)."""
    path = Path(item.path)
    # Streamed from the descriptor that was checked: a path re-opened after the check
    # could be swapped for a link in between.
    f = open_indexed(path, item.size, item.mtime_ns, f"item #{item.id}")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {**_CACHE, "Content-Length": str(item.size),
               "Content-Disposition": f"inline; filename*=utf-8''{quote(path.name)}"}
    return StreamingResponse(_chunks(f), media_type=media, headers=headers)


@router.get(
    "/items/{item_id:int}/thumbnail", response_class=FileResponse, summary="A JPEG thumbnail",
    responses={200: {"content": {"image/jpeg": {}}, "description": "EXIF-rotated JPEG."}},
)
async def get_thumbnail(
    item: ItemDep,
    state: StateDep,
    request: Request,
    size: Annotated[int, Query(ge=16, le=1024, description=(
        "Longest side in pixels; rounded up to one of 64, 128, 256, 384, 512, 768, 1024."))] = 256,
) -> FileResponse:
    """A thumbnail, made once and cached on disk (keyed by the file's content)."""
    path = await run_in_threadpool(state.thumbs.cached, item, size)
    if path is None:  # decoding is heavy work: it waits for a slot (503 when full)
        async with request.app.state.heavy.slot():
            path = await run_in_threadpool(state.thumbs.get, item, size)
    return FileResponse(path, media_type="image/jpeg", headers=_CACHE)
