"""A model's eval transform without torch: PIL image → normalised float32 ``(3, H, W)``.

open_clip's eval transform is a torchvision ``Compose`` of ``Resize`` (shortest side or
both sides, bicubic or bilinear), ``CenterCrop``, an RGB conversion, ``ToTensor`` and
``Normalize``. On a PIL image torchvision resizes and crops with Pillow itself, so the
same Pillow calls and the same float32 arithmetic in numpy give the same array, bit for
bit. :func:`describe` reads such a ``Compose`` into plain data (at export time, where torch
is loaded anyway, and only when every step is one of these); :class:`ArrayTransform`
replays it. The export checks the replay against the transform on its probe pictures
(``clipfind.onnx_export``), so an index run on a ready export needs no torch at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def describe(transform: Any) -> dict[str, Any] | None:
    """``transform`` as data, or None when any step is not one :class:`ArrayTransform`
    replays exactly (a timm ``ResizeKeepRatio``, a pad-to-square, a custom function)."""
    steps = getattr(transform, "transforms", None)
    if not isinstance(steps, list | tuple):
        return None
    out: list[list[Any]] = []
    for step in steps:
        kind = type(step).__name__
        if kind == "Resize":
            mode = getattr(step.interpolation, "value", None)
            if mode not in _FILTERS or step.max_size is not None:
                return None
            size = step.size
            size = [int(size)] if isinstance(size, int) else [int(s) for s in size]
            if len(size) not in (1, 2):
                return None
            out.append(["resize", size, mode])
        elif kind == "CenterCrop":
            out.append(["crop", [int(s) for s in step.size]])
        elif (
            kind in ("MaybeConvertMode", "_convert_to_rgb")
            or getattr(step, "__name__", "") == "_convert_to_rgb"
        ):
            if getattr(step, "mode", "RGB") != "RGB":
                return None
            out.append(["rgb"])
        elif kind in ("ToTensor", "MaybeToTensor"):
            out.append(["tensor"])
        elif kind == "Normalize":
            out.append(["normalize", [float(m) for m in step.mean], [float(s) for s in step.std]])
        else:
            return None
    kinds = [s[0] for s in out]
    if kinds[-3:] != ["rgb", "tensor", "normalize"] or kinds.count("tensor") != 1:
        return None  # an RGB image into ToTensor, then Normalize, as open_clip builds it
    return {"steps": out}


class ArrayTransform:
    """Replays a :func:`describe`\\ d transform with Pillow and numpy (picklable: Ray
    workers receive it like the torch transform)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.steps = [list(s) for s in doc["steps"]]

    def __call__(self, image: Image.Image) -> npt.NDArray[np.float32]:
        value: Any = image
        for step in self.steps:
            value = _apply(step, value)
        return np.ascontiguousarray(value, dtype=np.float32)

    def __repr__(self) -> str:
        return f"ArrayTransform({self.steps})"


def probe_pictures() -> list[Image.Image]:
    """Six varied pictures (gradients, noise, stripes, flat colour, a disc): the fixed
    image probe of the export's self-check."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 96, dtype=np.float32)
    grad = np.stack([np.tile(ramp, (80, 1)), np.tile(ramp[:80, None], (1, 96)), np.full((80, 96), 128.0)], -1)
    stripes = np.zeros((90, 120, 3), np.float32)
    stripes[:, ::8] = (250, 40, 30)
    yy, xx = np.mgrid[:100, :100]
    disc = np.where(((yy - 50) ** 2 + (xx - 40) ** 2 < 900)[..., None], (30, 200, 60), (240, 240, 230))
    arrays = [
        grad,
        rng.uniform(0, 255, (64, 64, 3)),
        stripes,
        np.full((50, 70, 3), (20, 60, 160)),
        disc,
        rng.normal(120, 40, (128, 80, 3)).clip(0, 255),
    ]
    return [Image.fromarray(a.astype(np.uint8), "RGB") for a in arrays]


def replayable(transform: Any) -> dict[str, Any] | None:
    """:func:`describe` of ``transform`` when :class:`ArrayTransform` gives exactly its
    output on the probe pictures and on larger ones of both orientations (downscaled and
    cropped, as photos are), else None."""
    doc = describe(transform)
    if doc is None:
        return None
    replay = ArrayTransform(doc)
    rng = np.random.default_rng(1)
    larger = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
        for h, w in ((301, 517), (640, 403), (333, 333))
    ]
    for picture in [*probe_pictures(), *larger]:
        if not np.array_equal(np.asarray(transform(picture), np.float32), replay(picture)):
            return None
    return doc


def _apply(step: list[Any], value: Any) -> Any:
    kind = step[0]
    if kind == "resize":
        return _resize(value, step[1], _FILTERS[step[2]])
    if kind == "crop":
        return _center_crop(value, step[1][0], step[1][1] if len(step[1]) > 1 else step[1][0])
    if kind == "rgb":
        return value.convert("RGB")
    if kind == "tensor":  # torchvision's to_tensor on an RGB PIL image: HWC uint8 → CHW / 255
        array = np.asarray(value)
        return array.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    mean = np.asarray(step[1], np.float32)[:, None, None]
    std = np.asarray(step[2], np.float32)[:, None, None]
    return (value - mean) / std


def _resize(image: Image.Image, size: list[int], resample: Image.Resampling) -> Image.Image:
    """torchvision ``Resize`` on a PIL image: one number sizes the shorter side (the
    longer one rounds down), two are (height, width); the same size is left as it is."""
    w, h = image.size
    if len(size) == 2:
        new_h, new_w = size
    else:
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size[0], int(size[0] * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return image
    return image.resize((new_w, new_h), resample)


def _center_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    """torchvision ``CenterCrop`` on a PIL image: pad with black when smaller, then crop
    at the rounded centre."""
    w, h = image.size
    if width > w or height > h:
        left, top = (width - w) // 2 if width > w else 0, (height - h) // 2 if height > h else 0
        right, bottom = (width - w + 1) // 2 if width > w else 0, (height - h + 1) // 2 if height > h else 0
        padded = Image.new(image.mode, (w + left + right, h + top + bottom), 0)
        padded.paste(image, (left, top))
        image, (w, h) = padded, padded.size
        if (w, h) == (width, height):
            return image
    top = round((h - height) / 2.0)
    left = round((w - width) / 2.0)
    return image.crop((left, top, left + width, top + height))
