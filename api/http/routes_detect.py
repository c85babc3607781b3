"""Zero-shot detection (``POST /detect``): where in an image do the queries appear?
Boxes come back in the original image's pixels (EXIF-rotated, as a browser shows it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from clipfind.api.http.deps import StateDep
from clipfind.api.http.limits import Text, heavy
from clipfind.api.http.models import MAX_ID
from clipfind.api.http.uploads import FILE_FIELD, body_openapi, read_body_files
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
    queries: list[Text] = Field(default_factory=list, max_length=MAX_QUERIES, description=(
        "Texts to find, e.g. ['a dog', 'a red ball']; each at most 200 characters. "
        "Required unless an example is given."))
    item: int | None = Field(None, description="Id of an indexed item (no upload needed).")
    threshold: float | None = Field(None, ge=0, le=1, description=(
        "Minimum score; default 0.6 for CLIP (softmax), 0.1 for SigLIP and OWL (sigmoid)."))
    max_boxes: int = Field(10, ge=1, le=100)
    detector: Literal["clip", "owlvit", "owlv2"] | None = Field(None, description=(
        "clip (the collection's model), owlv2 or owlvit; default: the server's setting."))
    example_item: int | None = Field(None, description=(
        "Find things like this indexed item (OWL's image-guided detection), instead of "
        "queries; or upload an 'example' file (multipart)."))
    example_box: list[float] | None = Field(None, min_length=4, max_length=4, description=(
        "[xmin, ymin, xmax, ymax] in the example's pixels: look for what is inside it."))


EXAMPLE_FIELD = "example"


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


def _detector(state: Any, req: DetectRequest, example: bytes | None) -> tuple[Any, list[str]]:
    """The detector asked for (search/detect/choice.py) and the queries it answers."""
    from clipfind.search.detect.choice import make_detector

    given = (req.example_item is not None) + (example is not None)
    if given > 1 or (given == 1) == bool(req.queries):
        raise QueryError("give 'queries', or one example: 'example_item' (an indexed item's "
                         "id) or an uploaded 'example' file (multipart)")
    if given == 0:
        return make_detector(req.detector, state.settings, state.encoder), list(req.queries)
    if example is None:
        example_req = DetectRequest(item=req.example_item, queries=["example"])
        example, _ = _image_bytes(state, example_req, None)
        label = f"#{req.example_item}"
    else:
        label = "example"
    picture = decode_picture(example, f"example {label}", state.settings.max_pixels)
    return make_detector(req.detector, state.settings, None, _crop(picture, req.example_box),
                         label), [label]


def _crop(picture: Any, box: list[float] | None) -> Any:
    """The part of the example inside ``box`` (original pixels; the decoded picture
    may be drafted smaller)."""
    if box is None:
        return picture.image
    x0, y0, x1, y1 = box
    width, height = picture.info.width, picture.info.height
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise QueryError(f"example_box {box} is not a box inside the {width}x{height} example")
    sx, sy = picture.image.width / width, picture.image.height / height
    return picture.image.crop((round(x0 * sx), round(y0 * sy), max(round(x1 * sx), round(x0 * sx) + 1),
                               max(round(y1 * sy), round(y0 * sy) + 1)))


def _detect(state: Any, req: DetectRequest, upload: bytes | None,
            example: bytes | None = None) -> DetectOut:
    data, name = _image_bytes(state, req, upload)
    detector, queries = _detector(state, req, example)
    # the one size policy every shell uses (search/detect/picture.py)
    picture = decode_picture(data, name, state.settings.max_pixels)
    found = detect_picture(None, picture, queries, req.threshold, req.max_boxes, detector)
    out = [DetectionOut(label=d.label, score=d.score, box=BoxOut(**d.box.as_dict()))
           for d in found.detections]
    return DetectOut(width=found.width, height=found.height, item=req.item, detections=out)


@router.post("/detect", response_model=DetectOut, summary="Zero-shot detect objects",
             openapi_extra=body_openapi(DetectRequest, "JSON with 'item', or multipart with "
                                        "an 'image' file and the same fields.",
                                        {EXAMPLE_FIELD: "A picture of the thing to find (OWL "
                                         "image-guided detection), instead of queries."}),
             dependencies=[Depends(heavy)])
async def detect_route(request: Request, state: StateDep) -> DetectOut:
    """Boxes where the queries appear, best first, in transformers' detection shape
    (``label``, ``score``, ``box`` with ``xmin``, ``ymin``, ``xmax``, ``ymax``)."""
    req, files = await read_body_files(request, DetectRequest, state.settings.max_upload_bytes,
                                       (FILE_FIELD, EXAMPLE_FIELD))
    return await run_in_threadpool(_detect, state, req, files.get(FILE_FIELD),
                                   files.get(EXAMPLE_FIELD))
