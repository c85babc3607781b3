"""Zero-shot detection with the collection's own open_clip model: where in an image
does a text query appear?

1. **Heat maps.** ViT towers give patch embeddings in the joint space from one forward
   pass (search/dense.py, ClearCLIP-style); every query is one matrix product against
   them. Other towers (ResNet, ConvNeXt, attention-pooled SigLIP heads, anything without
   usable patch tokens) encode multi-scale sliding windows instead, and each cell of the
   map holds the mean score of the windows covering it.
2. **Proposals.** Each query's map is cut at several relative levels; connected regions
   give boxes (search/proposals.py). The picture's own regions (search/segments.py)
   add the few per query whose inside is hottest; they fit objects' extents, which a
   map of one cell per patch cannot.
3. **Re-scoring.** Every proposal is cropped with a little context and encoded with the
   ordinary image tower, in batches; its score is on the classification scale: a
   softmax over the queries plus the best of the background prompts and the query's
   partial queries (CLIP; search/detect_scoring.py), or the model's own sigmoid with
   its logit bias (SigLIP). Per-label non-maximum suppression, threshold, best first by
   score plus a prior for boxes that fit a picture region.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from clipfind.encoding import Encoder
from clipfind.errors import QueryError
from clipfind.imageio import to_rgb
from clipfind.search.detect import proposals as P
from clipfind.search.detect.dense import patch_embeddings, supports_dense
from clipfind.search.detect.refine import refine
from clipfind.search.detect.scoring import class_scores, query_texts
from clipfind.search.detect.segments import rank_by_heat, segment_boxes

log = logging.getLogger(__name__)

# Competing texts for CLIP's softmax: without them a lone query would always score 1.
# Generic phrases plus plain/empty backgrounds in the wording models see in captions of
# empty pictures; only the best of them competes, so extra prompts never dilute a score.
BACKGROUND = ("background", "an empty background", "a plain surface", "a texture",
              "a blurry photo", "a photo of something else", "a plain grey background",
              "an empty white background", "a black background", "nothing on a grey background")
DEFAULT_THRESHOLD = {"softmax": 0.6, "sigmoid": 0.1}
MAX_QUERIES = 32
NMS_IOU = 0.5
# A box mostly inside a better one (or around it) is the same object at another scale.
NMS_CONTAINED = 0.8


@dataclass(frozen=True)
class Box:
    """A box in the pixels of the image given to :func:`detect`."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float

    def as_dict(self) -> dict[str, float]:
        return {"xmin": self.xmin, "ymin": self.ymin, "xmax": self.xmax, "ymax": self.ymax}


@dataclass(frozen=True)
class Detection:
    """One found object: the query it answers, a score on the classification scale."""

    label: str
    score: float
    box: Box

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": self.score, "box": self.box.as_dict()}


@dataclass(frozen=True)
class DetectOptions:
    """Knobs of the method; the defaults are what docs/performance.md's figures were measured with."""

    background: tuple[str, ...] = BACKGROUND
    dense_mode: str = "clearclip"
    area_factor: float = 2.0       # dense pass: tokens relative to the model's square input
    context: float = 0.3           # crop margin per side, as a fraction of the box size
    proposals_per_query: int = 6
    # image-segment boxes (search/segments.py) kept per query, ranked by its heat map
    segments_per_query: int = 3
    window_scales: tuple[float, ...] = (0.35, 0.6)
    use_dense: bool = True         # False forces sliding windows (for comparisons)
    refine_rounds: int | None = None  # crop-scorer box refinement; None: 4 for windows, 0 dense
    extra_background: tuple[str, ...] = ()  # user-given "nothing here" prompts, added to the set
    windows_as_boxes: bool = False  # windows also compete as boxes (not only build the maps)
    # drop a box whose logit for a query is this far below the query's best box: a crop
    # ~4.5x less likely to be the query than the best one shows something else (a shape
    # of another colour); None keeps every box above the threshold
    relative_margin: float | None = 1.5
    # CLIP: each query also competes with itself less one content word ("a red car" ->
    # "a car", "a red"; search/detect_scoring.py)
    partial_queries: bool = True
    # a box's rank (not its score) is its score times 1 + this times its best IoU with a
    # picture region: crop scores barely change with a box's extent, picture boundaries do
    region_prior: float = 0.3


DEFAULT_OPTIONS = DetectOptions()


def detect(
    encoder: Encoder,
    image: Image.Image,
    queries: list[str],
    threshold: float | None = None,
    max_boxes: int = 10,
    options: DetectOptions | None = None,
) -> list[Detection]:
    """Boxes where ``queries`` appear in ``image`` (already decoded and EXIF-oriented),
    best first, at most ``max_boxes``. ``threshold`` defaults to 0.6 for CLIP (softmax
    against the other queries and background prompts) and 0.1 for SigLIP (sigmoid)."""
    opts = options or DEFAULT_OPTIONS
    labels = _clean_queries(queries)
    if max_boxes < 1:
        raise QueryError("max_boxes must be at least 1")
    image = to_rgb(image)
    kind = "sigmoid" if getattr(encoder, "is_sigmoid", False) else "softmax"
    threshold = DEFAULT_THRESHOLD[kind] if threshold is None else float(threshold)
    qt = (query_texts(labels, (), partial=False) if kind == "sigmoid" else
          query_texts(labels, (*opts.background, *opts.extra_background), opts.partial_queries))
    text_vecs = np.asarray(encoder.encode_texts(list(qt.texts)), np.float32)
    boxes, vecs, fit = _candidates(encoder, image, text_vecs[: len(labels)], opts)
    if len(boxes) == 0:
        return []
    scores = class_scores(encoder, vecs, text_vecs, qt)
    cos = vecs @ text_vecs[: len(labels)].T
    if opts.relative_margin is not None:
        logits = float(encoder.logit_scale) * cos
        far = logits < logits.max(axis=0, keepdims=True) - opts.relative_margin
        scores = np.where(far, 0.0, scores).astype(np.float32)
    ranked = _select(labels, boxes, scores, cos, threshold, opts.region_prior * fit)
    ranked.sort(key=lambda rd: (-rd[0], rd[1].label, rd[1].box.xmin, rd[1].box.ymin))
    return [d for _, d in ranked[:max_boxes]]


def heat_maps(encoder: Encoder, image: Image.Image, text_vecs: npt.NDArray[np.float32],
              options: DetectOptions | None = None) -> tuple[npt.NDArray[np.float32], bool]:
    """Per-query heat maps ``(n_queries, rows, cols)`` and whether they are dense (patch
    tokens) rather than built from sliding windows."""
    maps, windows, _ = _maps(encoder, image, text_vecs, options or DEFAULT_OPTIONS)
    return maps, len(windows) == 0


def _maps(encoder: Encoder, image: Image.Image, query_vecs: npt.NDArray[np.float32],
          opts: DetectOptions) -> tuple[npt.NDArray[np.float32], P.Boxes, npt.NDArray[np.float32]]:
    """Heat maps, plus the sliding windows and their embeddings when there are any."""
    if opts.use_dense and supports_dense(encoder):
        maps = patch_embeddings(encoder, image, opts.area_factor, opts.dense_mode).heat(query_vecs)
        if _flat(maps) and opts.dense_mode != "maskclip":
            # q-q attention can collapse every token onto one (seen on small models):
            # the value path alone keeps each token's own content
            maps = patch_embeddings(encoder, image, opts.area_factor, "maskclip").heat(query_vecs)
        if not _flat(maps):
            return maps, np.zeros((0, 4), np.float32), np.zeros((0, 0), np.float32)
    windows = P.sliding_windows(image.width, image.height, opts.window_scales)
    vecs = _encode_boxes(encoder, image, windows, context=0.0)
    maps = np.stack([P.windows_heat(windows, vecs @ t, image.width, image.height)
                     for t in query_vecs])
    return maps, windows, vecs


def _flat(maps: npt.NDArray[np.float32], tol: float = 1e-3) -> bool:
    """True when no map varies across the image (nothing to localise with)."""
    spread = np.ptp(maps.reshape(len(maps), -1), axis=1) if maps.size else np.zeros(1)
    return bool((spread < tol).all())


def _candidates(encoder: Encoder, image: Image.Image, query_vecs: npt.NDArray[np.float32],
                opts: DetectOptions) -> tuple[P.Boxes, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Proposal boxes for every query, their crop embeddings, and how well each fits
    one of the picture's regions (its best IoU with a segment box). (Sliding windows only
    build the maps: as boxes they are placed by a grid, not by the object, and a window
    half on an object scores nearly as well as one around it.)"""
    maps, windows, win_vecs = _maps(encoder, image, query_vecs, opts)
    found = [P.heat_proposals(m, image.width, image.height, max_boxes=opts.proposals_per_query)
             for m in maps]
    regions = segment_boxes(image) if opts.segments_per_query > 0 else np.zeros((0, 4), np.float32)
    if not _flat(maps):  # a flat map cannot say which regions matter
        found += _segment_proposals(image, regions, maps, opts.segments_per_query)
    props = np.concatenate([*found, np.zeros((0, 4), np.float32)])
    whole = np.array([[0, 0, image.width, image.height]], np.float32)
    # flat maps (nothing stands out): judge the whole image
    # proposals of several queries often coincide: each crop is encoded once
    props = props[P.distinct(props, 0.95)] if len(props) else whole
    log.debug("detect: %d proposals", len(props))
    props = P.clip_boxes(props, image.width, image.height)
    vecs = _encode_boxes(encoder, image, props, opts.context)
    if len(windows) and opts.windows_as_boxes:
        # already encoded; a window framing one object the way training pictures do is
        # often the best-scoring box, and refinement then tightens it
        props, vecs = np.concatenate([props, windows]), np.concatenate([vecs, win_vecs])
    rounds = opts.refine_rounds if opts.refine_rounds is not None else (4 if len(windows) else 0)
    if rounds and len(props):
        props, vecs = refine(lambda b: _encode_boxes(encoder, image, b, opts.context), props, vecs,
                             query_vecs, image.width, image.height, rounds)
    fit = P.iou(props, regions).max(axis=1) if len(regions) else np.zeros(len(props), np.float32)
    return props, vecs, fit


def _segment_proposals(image: Image.Image, regions: P.Boxes, maps: npt.NDArray[np.float32],
                       per_query: int) -> list[P.Boxes]:
    """The picture's own regions (tight around objects, where heat maps are one cell
    per patch), the few per query whose inside is hottest against their surroundings."""
    if len(regions) == 0 or per_query < 1:
        return []
    out = []
    for heat in maps:
        contrast = rank_by_heat(regions, heat, image.width, image.height)
        out.append(regions[np.argsort(-contrast, kind="stable")[:per_query]])
    return out


def _encode_boxes(encoder: Encoder, image: Image.Image, boxes: P.Boxes,
                  context: float) -> npt.NDArray[np.float32]:
    if len(boxes) == 0:
        return np.zeros((0, 0), np.float32)
    side = int(getattr(encoder, "image_size", 224))
    crops = [P.context_crop(image, b, context).resize((side, side), Image.Resampling.BICUBIC)
             for b in boxes]
    return np.asarray(encoder.encode_images(crops), np.float32)


def _select(labels: list[str], boxes: P.Boxes, scores: npt.NDArray[np.float32],
            cos: npt.NDArray[np.float32], threshold: float,
            prior: npt.NDArray[np.float32]) -> list[tuple[float, Detection]]:
    """Per label: candidates above the threshold, non-maximum suppressed, as ``(rank,
    detection)``. The rank is the score times 1 + ``prior`` (the region-fit prior);
    ties (a saturated softmax gives many 1.0s) go to the box whose crop is closer to the
    text, then to the larger box."""
    out = []
    for j, label in enumerate(labels):
        above = np.nonzero(scores[:, j] >= threshold)[0]
        if len(above) == 0:
            continue
        rank = scores[above, j].astype(np.float64) * (1.0 + prior[above])
        rank += 1e-6 * np.round(cos[above, j], 5)
        rank += 1e-12 * np.prod(boxes[above, 2:] - boxes[above, :2], axis=1)  # then: larger
        for k in P.nms(boxes[above], rank, NMS_IOU, NMS_CONTAINED):
            i = above[k]
            x0, y0, x1, y1 = (round(float(v), 2) for v in boxes[i])
            det = Detection(label, round(float(scores[i, j]), 6), Box(x0, y0, x1, y1))
            out.append((float(rank[k]), det))
    return out


def _clean_queries(queries: list[str]) -> list[str]:
    if isinstance(queries, str):
        queries = [queries]
    labels = list(dict.fromkeys(q.strip() for q in queries if q and q.strip()))
    if not labels:
        raise QueryError("give at least one non-empty --query to detect")
    if len(labels) > MAX_QUERIES:
        raise QueryError(f"at most {MAX_QUERIES} queries per image (got {len(labels)})")
    return labels
