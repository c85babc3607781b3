"""Class-agnostic region proposals from the picture itself, for detection.

A CLIP heat map says roughly *where* a query is (one cell per patch: 32 px for a
ViT-B-32 or a stride-32 ResNet), not where the object ends. The picture's own
boundaries do: regions of similar colour, grown and merged the way R-CNN's selective
search does (Uijlings et al. 2013) on a graph-based over-segmentation (Felzenszwalb and
Huttenlocher 2004). Every region met while merging gives a box; detection ranks them
per query by how much hotter the map is inside than around them (:func:`rank_by_heat`)
and re-scores only the best few with the crop encoder.

Runs on a small copy of the image (long side :data:`WORK_SIDE`): boxes need to be only
as sharp as the crops they become, and the loops here are plain Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from clipfind.search.detect.proposals import distinct

Boxes = npt.NDArray[np.float32]

WORK_SIDE = 96
# Felzenszwalb's k (larger: fewer, larger segments), in 0-255 RGB distance units.
SCALES = (60.0, 200.0)
HIST_BINS = 8


def segment_boxes(image: Image.Image, scales: tuple[float, ...] = SCALES,
                  work_side: int = WORK_SIDE, min_area: float = 0.004) -> Boxes:
    """Boxes ``(n, 4)`` of every region of a selective-search grouping, in the pixels
    of ``image``: the segments at each scale and every union formed while merging
    neighbours, without near-duplicates, tiny regions, slivers or the whole image."""
    small, sx, sy = _work_copy(image, work_side)
    h, w = small.shape[:2]
    boxes: list[npt.NDArray[np.float32]] = []
    for k in scales:
        labels = felzenszwalb(small, k, min_size=max(4, h * w // 400))
        boxes.append(_grouping_boxes(small, labels))
    arr = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    # slivers along hard edges (resampling leaves a line of in-between colour) are no objects
    arr = arr[np.minimum(arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]) >= 3]
    arr = arr * np.array([sx, sy, sx, sy], np.float32)
    area = (arr[:, 2] - arr[:, 0]) * (arr[:, 3] - arr[:, 1])
    full = image.width * image.height
    arr = arr[(area >= min_area * full) & (area < 0.95 * full)]
    if len(arr) == 0:
        return arr
    arr = np.unique(np.round(arr, 1), axis=0)
    return arr[distinct(arr, 0.9)]


def rank_by_heat(boxes: Boxes, heat: npt.NDArray[np.float32], width: int, height: int,
                 ring: float = 0.5) -> npt.NDArray[np.float32]:
    """Per box: mean of the (min-max normalised) map inside it minus the mean over a
    ring around it ``ring`` of its size wide. Highest for a box that just holds a hot
    region: a box inside the region has a hot ring, a box around much more has a cool
    inside."""
    if len(boxes) == 0:
        return np.zeros(0, np.float32)
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(heat)
    rows, cols = norm.shape
    integral = np.zeros((rows + 1, cols + 1), np.float64)
    integral[1:, 1:] = np.cumsum(np.cumsum(norm, 0), 1)
    gx, gy = cols / width, rows / height

    def cells(b: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        c0 = np.clip(np.floor(b[:, 0] * gx), 0, cols - 1)
        r0 = np.clip(np.floor(b[:, 1] * gy), 0, rows - 1)
        c1 = np.clip(np.ceil(b[:, 2] * gx), c0 + 1, cols)
        r1 = np.clip(np.ceil(b[:, 3] * gy), r0 + 1, rows)
        return np.stack([r0, c0, r1, c1], 1).astype(np.int64)

    def sums(c: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        r0, c0, r1, c1 = c.T
        total = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
        return total, ((r1 - r0) * (c1 - c0)).astype(np.float64)

    b = boxes.astype(np.float64)
    grow = (b[:, 2:] - b[:, :2]) * ring
    outer = np.concatenate([b[:, :2] - grow, b[:, 2:] + grow], 1)
    in_sum, in_n = sums(cells(b))
    out_sum, out_n = sums(cells(outer))
    ring_n = out_n - in_n
    # a box that leaves no ring inside the picture is compared with the whole map
    ring_mean = np.where(ring_n > 0, (out_sum - in_sum) / np.maximum(ring_n, 1), float(norm.mean()))
    return (in_sum / in_n - ring_mean).astype(np.float32)


def felzenszwalb(pixels: npt.NDArray[np.float32], k: float, min_size: int = 8) -> npt.NDArray[np.int64]:
    """Graph-based segmentation of an ``(h, w, 3)`` image: labels ``(h, w)`` numbered
    from 0. Pixels are nodes, 8-neighbours are joined by their colour distance, and two
    components merge when the edge between them is no heavier than either's internal
    variation plus ``k / size``; components under ``min_size`` pixels, and thin ones
    (lines that fill under 30 % of their box), then join their cheapest neighbour."""
    h, w = pixels.shape[:2]
    idx = np.arange(h * w).reshape(h, w)
    pairs = [(idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :]),
             (idx[:-1, :-1], idx[1:, 1:]), (idx[:-1, 1:], idx[1:, :-1])]
    a = np.concatenate([p[0].ravel() for p in pairs])
    b = np.concatenate([p[1].ravel() for p in pairs])
    flat = pixels.reshape(-1, 3)
    weight = np.sqrt(((flat[a] - flat[b]) ** 2).sum(1))
    order = np.argsort(weight, kind="stable")
    a, b = a[order], b[order]
    parent = list(range(h * w))
    size = [1] * (h * w)
    internal = [0.0] * (h * w)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(ru: int, rv: int) -> int:
        if size[ru] < size[rv]:
            ru, rv = rv, ru
        parent[rv] = ru
        size[ru] += size[rv]
        return ru

    def roots() -> npt.NDArray[np.int64]:
        return np.fromiter((find(i) for i in range(h * w)), np.int64, h * w)

    def between() -> tuple[list[int], list[int]]:
        """Edges (cheapest first) that join two different components."""
        r = roots()
        cross = r[a] != r[b]
        return a[cross].tolist(), b[cross].tolist()

    for u, v, wt in zip(a.tolist(), b.tolist(), weight[order].tolist(), strict=True):
        ru, rv = find(u), find(v)
        if ru != rv and wt <= min(internal[ru] + k / size[ru], internal[rv] + k / size[rv]):
            internal[union(ru, rv)] = wt
    for u, v in zip(*between(), strict=True):
        ru, rv = find(u), find(v)
        if ru != rv and (size[ru] < min_size or size[rv] < min_size):
            union(ru, rv)
    # Lines of in-between colour along an object's edge (anti-aliasing, resampling) are
    # components of their own; a diagonal one has a large box but fills little of it.
    # They join their cheapest neighbour too.
    thin = _thin_components(roots(), w)
    for u, v in zip(*between(), strict=True):
        ru, rv = find(u), find(v)
        if ru != rv and (thin[ru] or thin[rv]):
            both = thin[ru] and thin[rv]
            thin[union(ru, rv)] = both
    roots = np.fromiter((find(i) for i in range(h * w)), np.int64, h * w)
    return np.unique(roots, return_inverse=True)[1].reshape(h, w)


def _thin_components(roots: npt.NDArray[np.int64], width: int, fill: float = 0.3) -> dict[int, bool]:
    """Per component root: True when it covers under ``fill`` of its bounding box or is
    under 3 pixels across."""
    ids, inverse, counts = np.unique(roots, return_inverse=True, return_counts=True)
    ys, xs = np.divmod(np.arange(len(roots)), width)
    n = len(ids)
    x0, y0 = np.full(n, width), np.full(n, len(roots))
    x1, y1 = np.zeros(n, np.int64), np.zeros(n, np.int64)
    np.minimum.at(x0, inverse, xs)
    np.minimum.at(y0, inverse, ys)
    np.maximum.at(x1, inverse, xs + 1)
    np.maximum.at(y1, inverse, ys + 1)
    bw, bh = x1 - x0, y1 - y0
    is_thin = (counts < fill * bw * bh) | (np.minimum(bw, bh) < 3)
    return {int(r): bool(t) for r, t in zip(ids, is_thin, strict=True)}


def _grouping_boxes(pixels: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> Boxes:
    """Selective search's hierarchical grouping: repeatedly merge the two most similar
    neighbouring regions (colour histogram, small size first, compact union) and keep
    the box of every region along the way."""
    h, w = labels.shape
    n = int(labels.max()) + 1
    ys, xs = np.mgrid[0:h, 0:w]
    flat = labels.ravel()
    box = np.stack([np.full(n, w), np.full(n, h), np.zeros(n), np.zeros(n)], 1).astype(np.float64)
    np.minimum.at(box[:, 0], flat, xs.ravel())
    np.minimum.at(box[:, 1], flat, ys.ravel())
    np.maximum.at(box[:, 2], flat, xs.ravel() + 1)
    np.maximum.at(box[:, 3], flat, ys.ravel() + 1)
    sizes = np.bincount(flat, minlength=n).astype(np.float64)
    bins = np.clip((pixels * (HIST_BINS / 256.0)).astype(np.int64), 0, HIST_BINS - 1)
    hist = np.zeros((n, 3 * HIST_BINS))
    for ch in range(3):
        np.add.at(hist, (flat, ch * HIST_BINS + bins[..., ch].ravel()), 1.0)
    hist /= np.maximum(hist.sum(1, keepdims=True), 1)
    regions = {i: (box[i].tolist(), float(sizes[i]), hist[i]) for i in range(n)}
    neighbours = _adjacent(labels)
    image_area = float(h * w)

    def similarity(i: int, j: int) -> float:
        bi, si, hi = regions[i]
        bj, sj, hj = regions[j]
        union = (max(bi[2], bj[2]) - min(bi[0], bj[0])) * (max(bi[3], bj[3]) - min(bi[1], bj[1]))
        colour = float(np.minimum(hi, hj).sum()) / 3.0
        return colour + (1 - (si + sj) / image_area) + (1 - (union - si - sj) / image_area)

    sims = {pair: similarity(*pair) for pair in neighbours}
    out = [r[0] for r in regions.values()]
    next_id = n
    while sims:
        i, j = max(sims, key=sims.__getitem__)
        bi, si, hi = regions.pop(i)
        bj, sj, hj = regions.pop(j)
        merged = [min(bi[0], bj[0]), min(bi[1], bj[1]), max(bi[2], bj[2]), max(bi[3], bj[3])]
        regions[next_id] = (merged, si + sj, (hi * si + hj * sj) / (si + sj))
        out.append(merged)
        touching = {x for pair in sims if i in pair or j in pair for x in pair} - {i, j}
        sims = {p: s for p, s in sims.items() if i not in p and j not in p}
        for t in touching:
            sims[(t, next_id)] = similarity(t, next_id)
        next_id += 1
    return np.asarray(out, np.float32).reshape(-1, 4)


def _adjacent(labels: npt.NDArray[np.int64]) -> set[tuple[int, int]]:
    pairs = np.concatenate([
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
        np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
    ])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs.sort(axis=1)
    return {(int(a), int(b)) for a, b in np.unique(pairs, axis=0)}


def _work_copy(image: Image.Image, side: int) -> tuple[npt.NDArray[np.float32], float, float]:
    """A slightly blurred RGB copy with its long side at most ``side``, and the factors
    back to the image's pixels."""
    scale = min(1.0, side / max(image.width, image.height))
    w, h = max(2, round(image.width * scale)), max(2, round(image.height * scale))
    small = image.convert("RGB").resize((w, h), Image.Resampling.BOX)
    small = small.filter(ImageFilter.GaussianBlur(0.8))
    return np.asarray(small, np.float32), image.width / w, image.height / h
