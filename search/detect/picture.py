"""Detection on a picture of any size: the one size policy every shell uses.

The detector works on at most :data:`DETECT_SIDE` pixels on the long side (JPEG draft
decoding gets a big photo there cheaply), and the boxes are scaled back to the
original picture's pixels (EXIF orientation applied, as a viewer shows it). ``clipfind
detect``, ``search --locate``, ``POST /detect``, the demo and the Python API all come
through :func:`detect_picture`, so one image gives the same boxes in every shell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from clipfind.imageio import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageInfo,
    decode_image,
    read_bytes,
    read_indexed,
)
from clipfind.search.detect.detector import Box, Detection, detect

if TYPE_CHECKING:
    from clipfind.encoding import Encoder
    from clipfind.search.detect.choice import Detector

# Patch heat maps and crops gain nothing above this; a 12 MP photo would cost ~10x more.
DETECT_SIDE = 1024


@dataclass(frozen=True)
class DetectResult:
    """Boxes for one picture, best first, in the pixels of the picture as displayed
    (``width`` x ``height``: the original's size, EXIF orientation applied)."""

    width: int
    height: int
    detections: list[Detection]

    def as_dict(self) -> dict[str, object]:
        return {"width": self.width, "height": self.height,
                "detections": [d.as_dict() for d in self.detections]}


def decode_picture(data: bytes, name: str = "image",
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode bytes for detection: a JPEG is drafted down towards the working size."""
    return decode_image(data, DETECT_SIDE // 2, max_pixels, name)


def load_picture(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    return decode_picture(read_bytes(Path(path)), str(path), max_pixels)


def load_indexed_picture(item: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """An indexed item's picture, read only if its file is still the one indexed (same
    size and mtime, no link swapped in that leads elsewhere): ``FileChangedError`` or
    ``NotFoundError`` otherwise (:func:`clipfind.imageio.read_indexed`)."""
    name = f"item #{item.id}"
    return decode_picture(read_indexed(Path(item.path), item.size, item.mtime_ns, name), name,
                          max_pixels)


def as_picture(image: Image.Image) -> DecodedImage:
    """A PIL image a caller already holds (taken as displayed: no EXIF turn)."""
    return DecodedImage(image, ImageInfo(image.width, image.height))


def detect_picture(encoder: Encoder | None, picture: DecodedImage, queries: list[str],
                   threshold: float | None = None, max_boxes: int = 10,
                   detector: Detector | None = None) -> DetectResult:
    """Detect ``queries`` at the working size; boxes in the original's pixels.
    ``detector`` (search/detect/choice.py: an OWL model, or OWL by example) replaces
    the CLIP detector on ``encoder``."""
    image = picture.image
    if max(image.size) > DETECT_SIDE:
        image = image.copy()
        image.thumbnail((DETECT_SIDE, DETECT_SIDE))
    if detector is not None:
        found = detector.detect(image, queries, threshold, max_boxes)
    else:
        found = detect(encoder, image, queries, threshold, max_boxes)
    width, height = picture.info.width, picture.info.height
    sx, sy = width / image.width, height / image.height
    scaled = [Detection(d.label, round(float(d.score), 6), Box(
        round(d.box.xmin * sx, 1), round(d.box.ymin * sy, 1),
        round(d.box.xmax * sx, 1), round(d.box.ymax * sy, 1))) for d in found]
    return DetectResult(width, height, scaled)
