"""Box geometry for detection: proposals from heat maps, sliding windows, crops with
context, IoU and non-maximum suppression.

Boxes are ``float32`` arrays of shape ``(n, 4)`` holding ``xmin, ymin, xmax, ymax`` in
the pixels of the image being searched; a heat map covers the whole image, so cell
``(i, j)`` of an ``(h, w)`` map spans ``[j * W / w, (j + 1) * W / w)`` horizontally.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

Boxes = npt.NDArray[np.float32]
HeatMap = npt.NDArray[np.float32]

# Relative levels (of the map's min..max range) at which a heat map is cut into regions:
# a high cut isolates the peak of a small object, a low one covers a large one.
LEVELS = (0.45, 0.6, 0.75, 0.9)
# A heat map is upsampled to about this many cells on its long side before it is cut,
# so region borders fall between patch centres instead of on the coarse patch grid.
FINE_CELLS = 96


def _overlap(a: Boxes, b: Boxes) -> tuple[npt.NDArray[np.float32], ...]:
    """Pairwise intersection areas ``(len(a), len(b))`` and each side's box areas."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter, area_a, area_b


def iou(a: Boxes, b: Boxes) -> npt.NDArray[np.float32]:
    """Pairwise intersection over union, ``(len(a), len(b))``."""
    inter, area_a, area_b = _overlap(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def containment(a: Boxes, b: Boxes) -> npt.NDArray[np.float32]:
    """Pairwise intersection over the smaller area: 1 when one box holds the other."""
    inter, area_a, area_b = _overlap(a, b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, inter / np.maximum(smaller, 1e-9), 0.0).astype(np.float32)


def nms(boxes: Boxes, scores: npt.NDArray[np.float32], iou_threshold: float = 0.5,
        contained_threshold: float | None = None) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best first. With
    ``contained_threshold``, a box is also dropped when that share of the smaller of it
    and a kept box lies inside the other (nested boxes of one object)."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: list[int] = []
    overlaps = iou(boxes, boxes)
    nested = containment(boxes, boxes) if contained_threshold is not None else None
    while order:
        best = order.pop(0)
        keep.append(int(best))
        order = [i for i in order if overlaps[best, i] <= iou_threshold
                 and (nested is None or nested[best, i] <= contained_threshold)]
    return keep


def distinct(boxes: Boxes, tol: float) -> list[int]:
    """Indices, in order, of the boxes with no almost identical (IoU > ``tol``) earlier
    box: :func:`nms` with the boxes' own order as their scores."""
    return nms(boxes, -np.arange(len(boxes), dtype=np.float64), tol)


def components(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int, int, int, npt.NDArray[np.int64]]]:
    """4-connected regions of a boolean grid as ``(row0, col0, row1, col1, cells)``
    (inclusive bounds; ``cells`` are flat indices), in row-major order of their first
    cell."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return []
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(1, count + 2))
    out = []
    for n, where in enumerate(ndimage.find_objects(labels)):
        cells = order[starts[n]:starts[n + 1]].astype(np.int64)
        out.append((where[0].start, where[1].start, where[0].stop - 1, where[1].stop - 1, cells))
    return out


def upsample(heat: HeatMap, cells: int = FINE_CELLS) -> HeatMap:
    """Bilinear upsampling of a coarse map so its long side has about ``cells`` cells."""
    import torch
    import torch.nn.functional as F

    h, w = heat.shape
    factor = max(1, round(cells / max(h, w)))
    if factor == 1:
        return heat.astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(heat, np.float32))[None, None]
    fine = F.interpolate(t, size=(h * factor, w * factor), mode="bilinear", align_corners=False)
    return fine[0, 0].numpy()


def heat_proposals(
    heat: HeatMap,
    width: int,
    height: int,
    levels: tuple[float, ...] = LEVELS,
    max_boxes: int = 6,
    min_area: float = 0.002,
) -> Boxes:
    """Boxes around the hot regions of ``heat`` (any scale) in image pixels.

    The map is cut at several relative levels; each connected region above a cut gives
    its bounding box. Regions are ranked by their peak, then by how close their cut is
    to half the range (a blurred blob's edge lies at half its height), and
    near-duplicates (IoU > 0.8) are dropped.
    """
    fine = upsample(heat)
    lo, hi = float(fine.min()), float(fine.max())
    if not np.isfinite(hi - lo) or hi - lo < 1e-6:
        return np.zeros((0, 4), np.float32)
    norm = (fine - lo) / (hi - lo)
    fh, fw = norm.shape
    sx, sy = width / fw, height / fh
    boxes, ranks = [], []
    for level in levels:
        for r0, c0, r1, c1, cells in components(norm >= level):
            box = [c0 * sx, r0 * sy, (c1 + 1) * sx, (r1 + 1) * sy]
            if (box[2] - box[0]) * (box[3] - box[1]) < min_area * width * height:
                continue
            boxes.append(box)
            ranks.append(round(float(norm.ravel()[cells].max()), 3) - 0.01 * abs(level - 0.5))
    if not boxes:
        return np.zeros((0, 4), np.float32)
    arr = np.asarray(boxes, np.float32)
    keep = nms(arr, np.asarray(ranks, np.float32), 0.8)[:max_boxes]
    return arr[keep]


def sliding_windows(width: int, height: int, scales: tuple[float, ...] = (0.35, 0.6),
                    overlap: float = 0.5) -> Boxes:
    """Square windows at several sizes (fractions of the short side), overlapping by
    ``overlap``, covering the image edge to edge; the whole image comes first."""
    out = [[0.0, 0.0, float(width), float(height)]]
    short = min(width, height)
    for scale in scales:
        side = max(1.0, scale * short)
        stride = side * (1 - overlap)
        xs = _positions(width, side, stride)
        ys = _positions(height, side, stride)
        out.extend([x, y, x + side, y + side] for y in ys for x in xs)
    return np.asarray(out, np.float32)


def _positions(length: int, side: float, stride: float) -> npt.NDArray[np.float64]:
    if side >= length:
        return np.zeros(1)
    n = int(np.ceil((length - side) / stride)) + 1
    return np.linspace(0.0, length - side, n)


def windows_heat(windows: Boxes, scores: npt.NDArray[np.float32], width: int, height: int,
                 cells: int = 32) -> HeatMap:
    """A heat map from window scores: each cell holds the mean score of the windows that
    cover it, so a region that every window around it agrees on stands out."""
    scale = cells / max(width, height)
    gw, gh = max(1, round(width * scale)), max(1, round(height * scale))
    total = np.zeros((gh, gw), np.float64)
    count = np.zeros((gh, gw), np.float64)
    for (x0, y0, x1, y1), s in zip(windows, scores, strict=True):
        c0, c1 = int(x0 / width * gw), max(int(x0 / width * gw) + 1, round(x1 / width * gw))
        r0, r1 = int(y0 / height * gh), max(int(y0 / height * gh) + 1, round(y1 / height * gh))
        total[r0:r1, c0:c1] += s
        count[r0:r1, c0:c1] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def clip_boxes(boxes: Boxes, width: int, height: int) -> Boxes:
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    return out


def context_crop(image: Image.Image, box: npt.ArrayLike, context: float = 0.1,
                 min_side: int = 8) -> Image.Image:
    """The box grown by ``context`` of its size on each side, letterboxed to a square
    with its own border colour: the model sees the whole region, undistorted, and
    little of the neighbours a square crop of the scene would pull in."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).ravel()[:4])
    dx, dy = (x1 - x0) * context, (y1 - y0) * context
    left, top = max(0, int(np.floor(x0 - dx))), max(0, int(np.floor(y0 - dy)))
    right = min(image.width, max(left + 1, int(np.ceil(x1 + dx))))
    bottom = min(image.height, max(top + 1, int(np.ceil(y1 + dy))))
    crop = image.crop((left, top, right, bottom))
    side = max(crop.width, crop.height, min_side)
    if crop.width == crop.height == side:
        return crop
    arr = np.asarray(crop, np.float32)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))
    square = Image.new("RGB", (side, side), fill)
    square.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
    return square
