"""Drawing detections onto an image (``clipfind detect --draw``)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from clipfind.search.detect.detector import Detection

PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` with each detection's box and "label score" drawn on it; one
    colour per label, line width and font scaled to the image."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(max(out.size) / 300))
    font = _font(max(10, round(max(out.size) / 45)))
    colours: dict[str, tuple[int, int, int]] = {}
    for det in detections:
        colour = colours.setdefault(det.label, PALETTE[len(colours) % len(PALETTE)])
        b = det.box
        draw.rectangle((b.xmin, b.ymin, b.xmax, b.ymax), outline=colour, width=width)
        text = f"{det.label} {det.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        y = b.ymin - (bottom - top) - 2 * width if b.ymin > bottom - top + 2 * width else b.ymin
        draw.rectangle((b.xmin, y, b.xmin + right - left + 2 * width, y + bottom - top + 2 * width),
                       fill=colour)
        draw.text((b.xmin + width - left, y + width - top), text, fill=(255, 255, 255), font=font)
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()
