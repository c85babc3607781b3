"""Zero-shot detection (``POST /detect``): where in an image do the queries appear?
Boxes come back in the original image's pixels (EXIF-rotated, as a browser shows it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from clipfind.api.http.deps import StateDep
from clipfind.api.http.limits import Text, heavy
from clipfind.api.http.models import MAX_ID
from clipfind.api.http.uploads import body_openapi, read_body
from clipfind.errors import NotFoundError, QueryError
from clipfind.imageio import read_indexed
from clipfind.search.detect.detector import MAX_QUERIES
from clipfind.search.detect.picture import decode_picture, detect_picture
from clipfind.store import ItemStatus

router = APIRouter(tags=["detect"])


class DetectRequest(BaseModel):
    """What to look for, in an indexed item (``item``, JSON) or an uploaded ``image``
    (multipart, with the same fields as form fields)."""

    model_config = ConfigDict(extra="forbid")
    queries: list[Text] = Field(min_length=1, max_length=MAX_QUERIES, description=(
        "Texts to find, e.g. ['a dog', 'a red ball']; each at most 200 characters."))
    item: int | None = Field(None, description="Id of an indexed item (no upload needed).")
    threshold: float | None = Field(None, ge=0, le=1, description=(
        "Minimum score; default 0.6 for CLIP (softmax), 0.1 for SigLIP (sigmoid)."))
    max_boxes: int = Field(10, ge=1, le=100)


class BoxOut(BaseModel):
    xmin: float
    ymin: float
    xmax: float
    ymax: float


class DetectionOut(BaseModel):
    label: str
    score: float
    box: BoxOut


class DetectOut(BaseModel):
    width: int = Field(description="Width of the image the boxes refer to (original pixels).")
    height: int
    item: int | None = None
    detections: list[DetectionOut] = Field(description="Best first: transformers' shape.")


BODY_MODELS = [DetectRequest]


def _image_bytes(state: Any, req: DetectRequest, upload: bytes | None) -> tuple[bytes, str]:
    if (req.item is None) == (upload is None):
        raise QueryError("give exactly one image: 'item' (an indexed item's id) or an "
                         "uploaded 'image' file (multipart)")
    if upload is not None:
        return upload, "upload"
    item = state.collection.catalog.get_item(req.item) if 0 < req.item < MAX_ID else None
    if item is None or item.status != ItemStatus.OK:
        raise NotFoundError(f"item #{req.item} is not in the collection")
    name = f"item #{item.id}"
    return read_indexed(Path(item.path), item.size, item.mtime_ns, name), name


def _detect(state: Any, req: DetectRequest, upload: bytes | None) -> DetectOut:
    data, name = _image_bytes(state, req, upload)
    # the one size policy every shell uses (search/detect/picture.py)
    picture = decode_picture(data, name, state.settings.max_pixels)
    found = detect_picture(state.encoder, picture, req.queries, req.threshold, req.max_boxes)
    out = [DetectionOut(label=d.label, score=d.score, box=BoxOut(**d.box.as_dict()))
           for d in found.detections]
    return DetectOut(width=found.width, height=found.height, item=req.item, detections=out)


@router.post("/detect", response_model=DetectOut, summary="Zero-shot detect objects",
             openapi_extra=body_openapi(DetectRequest, "JSON with 'item', or multipart with "
                                        "an 'image' file and the same fields."),
             dependencies=[Depends(heavy)])
async def detect_route(request: Request, state: StateDep) -> DetectOut:
    """Boxes where the queries appear, best first, in transformers' detection shape
    (``label``, ``score``, ``box`` with ``xmin``, ``ymin``, ``xmax``, ``ymax``)."""
    req, upload = await read_body(request, DetectRequest, state.settings.max_upload_bytes)
    return await run_in_threadpool(_detect, state, req, upload)
