"""Zero-shot detection with OWL-ViT / OWLv2 (Minderer et al. 2022, 2023) through
``transformers``: CLIP towers fine-tuned end to end with a box and a class head.

Each patch token of the image predicts one box and an embedding; a query's score for
that box is the model's sigmoid of their similarity (shifted and scaled per box by the
class head). The image tower runs once per picture, however many queries; the queries
go through the text tower as one batch and are cached by text, so locating one query
in a page of results encodes it once. By example (image-guided detection), the example
picture's most object-like box gives the query embedding instead of a text.

Output follows :mod:`clipfind.search.detect.detector`: boxes in the given image's pixels
(OWLv2 pads the picture to a square at the bottom and right before resizing, so its
boxes are relative to the long side; OWL-ViT stretches the picture, so its boxes are
relative to each side), clipped to the picture, per-label NMS, threshold, best first.
Scores equal ``transformers``' own post-processing (tests/test_owl.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from clipfind.errors import ModelLoadError, QueryError
from clipfind.imageio import to_rgb
from clipfind.search.detect import proposals as P
from clipfind.search.detect.detector import NMS_CONTAINED, NMS_IOU, Box, Detection, _clean_queries

log = logging.getLogger(__name__)

OWL_KINDS = ("owlvit", "owlv2")
DEFAULT_OWL_MODELS = {"owlv2": "google/owlv2-base-patch16-ensemble",
                      "owlvit": "google/owlvit-base-patch32"}
DEFAULT_THRESHOLD = 0.1  # transformers' pipeline default for OWL's sigmoid scores
# image-guided detection: transformers' own suppression, and its "display alpha" rule
# (a box scoring under a tenth of the best one is not shown)
EXAMPLE_NMS_IOU = 0.3
EXAMPLE_RELATIVE = 0.1
INSTALL_HELP = "OWL detection needs the transformers package: pip install 'clipfind[owl]'."
SAVE_HELP = ("Without internet access, save it once where it can be downloaded "
             "(AutoModelForZeroShotObjectDetection and AutoProcessor .from_pretrained(NAME)"
             ".save_pretrained(FOLDER)) and pass that folder as --owl-model.")


@dataclass(frozen=True)
class OwlOptions:
    """Suppression rules; the defaults are the CLIP detector's."""

    nms_iou: float = NMS_IOU
    nms_contained: float | None = NMS_CONTAINED


DEFAULT_OPTIONS = OwlOptions()


class OwlDetector:
    """A loaded OWL-ViT or OWLv2 model and its processor (see :func:`load_owl`)."""

    def __init__(self, model: Any, processor: Any, spec: str) -> None:
        self.model = model
        self.processor = processor
        self.spec = spec
        self.kind: str = model.config.model_type  # "owlvit" or "owlv2"
        self._base = getattr(model, self.kind)
        self._texts: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def detect(self, image: Image.Image, queries: list[str], threshold: float | None = None,
               max_boxes: int = 10, options: OwlOptions | None = None) -> list[Detection]:
        """Boxes where ``queries`` appear in ``image`` (decoded, EXIF-oriented), best
        first, at most ``max_boxes``; a box's score for a query is OWL's sigmoid."""
        labels = _clean_queries(queries)
        threshold = _check(threshold, max_boxes)
        image = to_rgb(image)
        feats, boxes = self._image(image)
        scores = self._scores(feats, self.text_embeddings(labels))
        pixels = self._to_pixels(boxes, image.width, image.height)
        return _select(labels, pixels, scores, threshold, max_boxes, options or DEFAULT_OPTIONS)

    def detect_example(self, image: Image.Image, example: Image.Image | Any,
                       threshold: float | None = None, max_boxes: int = 10,
                       label: str = "example", options: OwlOptions | None = None) -> list[Detection]:
        """Image-guided detection: boxes of things that look like ``example`` (a picture,
        or :meth:`example_embedding` of one). Boxes are chosen as ``transformers``'
        ``post_process_image_guided_detection`` does (suppression at IoU 0.3 on the
        model's boxes, scores at least ``threshold`` and above a tenth of the best);
        the score reported is the model's sigmoid, not that method's relative alpha."""
        threshold = _check(threshold, max_boxes)
        query = self.example_embedding(example) if isinstance(example, Image.Image) else example
        image = to_rgb(image)
        feats, boxes = self._image(image)
        scores = self._scores(feats, query)[:, 0]
        keep = P.nms(boxes, scores, EXAMPLE_NMS_IOU)  # on the model's own boxes, as transformers
        best = float(scores[keep].max()) if keep else 0.0
        keep = [i for i in keep if scores[i] >= threshold and scores[i] > EXAMPLE_RELATIVE * (best + 1e-6)]
        only = np.zeros_like(scores)
        only[keep] = scores[keep]
        pixels = self._to_pixels(boxes, image.width, image.height)
        return _select([label], pixels, only[:, None], 0.0, max_boxes, options or DEFAULT_OPTIONS)

    def example_embedding(self, example: Image.Image) -> Any:
        """The query embedding of an example picture: the class embedding of its most
        object-like box (the model's own ``embed_image_query``), shape ``(1, dim)``."""
        import torch

        with torch.inference_mode():
            feature_map = self.model.image_embedder(pixel_values=self._pixels(to_rgb(example)))[0]
            b, h, w, d = feature_map.shape
            feats = feature_map.reshape(b, h * w, d)
            query = self.model.embed_image_query(feats, feature_map)[0]
        if query is None:  # OWL-ViT: no box of the example overlaps the whole picture
            raise QueryError("the example picture gives the model no box to look for")
        return query.reshape(1, -1)

    def text_embeddings(self, texts: list[str]) -> Any:
        """Normalised text embeddings ``(len(texts), dim)``; new texts go through the text
        tower in one batch, known ones come from a cache."""
        import torch

        missing = [t for t in dict.fromkeys(texts) if t not in self._texts]
        if missing:
            length = int(self.model.config.text_config.max_position_embeddings)
            tokens = self.processor.tokenizer(missing, padding="max_length", truncation=True,
                                              max_length=length, return_tensors="pt")
            with torch.inference_mode():
                out = self._base.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                   attention_mask=tokens["attention_mask"].to(self.device))
                vecs = getattr(out, "pooler_output", out)
                vecs = vecs / torch.linalg.norm(vecs, ord=2, dim=-1, keepdim=True)
            with self._lock:
                if len(self._texts) > 4096:  # bounded: a server sees endless new texts
                    self._texts.clear()
                self._texts.update(zip(missing, vecs, strict=True))
        return torch.stack([self._texts[t] for t in texts])

    def _pixels(self, image: Image.Image) -> Any:
        pixels = self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, next(self.model.parameters()).dtype)

    def _image(self, image: Image.Image) -> tuple[Any, npt.NDArray[np.float32]]:
        """Per-box image features and the boxes as corners relative to the model input."""
        import torch

        with torch.inference_mode():
            feature_map = self.model.image_embedder(pixel_values=self._pixels(image))[0]
            b, h, w, d = feature_map.shape
            feats = feature_map.reshape(b, h * w, d)
            cx, cy, bw, bh = self.model.box_predictor(feats, feature_map)[0].float().unbind(-1)
            corners = torch.stack([cx - 0.5 * bw, cy - 0.5 * bh, cx + 0.5 * bw, cy + 0.5 * bh], -1)
        return feats, corners.cpu().numpy().astype(np.float32)

    def _scores(self, feats: Any, queries: Any) -> npt.NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            logits = self.model.class_predictor(feats, queries[None].to(feats.dtype))[0][0]
            return torch.sigmoid(logits.float()).cpu().numpy()

    def _to_pixels(self, boxes: npt.NDArray[np.float32], width: int, height: int) -> npt.NDArray[np.float32]:
        # OWLv2 pads to a square at the bottom/right: both axes are relative to the long side
        if self.kind == "owlv2":
            scale = np.full(4, max(width, height), np.float32)
        else:
            scale = np.array([width, height, width, height], np.float32)
        return P.clip_boxes(boxes * scale, width, height)


def _check(threshold: float | None, max_boxes: int) -> float:
    if max_boxes < 1:
        raise QueryError("max_boxes must be at least 1")
    return DEFAULT_THRESHOLD if threshold is None else float(threshold)


def _select(labels: list[str], boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
            threshold: float, max_boxes: int, opts: OwlOptions) -> list[Detection]:
    """Per label: boxes scoring above ``threshold`` (strictly, as transformers) that
    still have an area inside the picture, suppressed; then best first overall."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    found = []
    for j, label in enumerate(labels):
        above = np.nonzero((scores[:, j] > threshold) & (area > 0))[0]
        for k in P.nms(boxes[above], scores[above, j], opts.nms_iou, opts.nms_contained):
            i = above[k]
            x0, y0, x1, y1 = (round(float(v), 2) for v in boxes[i])
            found.append(Detection(label, round(float(scores[i, j]), 6), Box(x0, y0, x1, y1)))
    found.sort(key=lambda d: (-d.score, d.label, d.box.xmin, d.box.ymin))
    return found[:max_boxes]


def load_owl(spec: str, device: str = "cpu", kind: str | None = None) -> OwlDetector:
    """Load an OWL model: a Hugging Face name (``google/owlv2-base-patch16-ensemble``) or
    a folder written by ``save_pretrained`` (model and processor; ``local-dir:`` prefix
    allowed). ``kind`` ("owlvit"/"owlv2") refuses a model of the other family. Every
    failure is one :class:`ModelLoadError` sentence."""
    try:
        import transformers
    except ImportError as exc:
        raise ModelLoadError(INSTALL_HELP) from exc
    source, local = _source(spec)
    if not local:
        _offline_if_unreachable()
    transformers.utils.logging.disable_progress_bar()  # library code draws no bars
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=local)
        family = getattr(config, "model_type", None)
        if family not in OWL_KINDS:
            raise ModelLoadError(f"{spec!r} is a {family or 'unknown'} model, not OWL-ViT or OWLv2.")
        if kind is not None and family != kind:
            raise ModelLoadError(f"{spec!r} is an {family} model but the detector asked for is {kind}.")
        cls = (transformers.Owlv2ForObjectDetection if family == "owlv2"
               else transformers.OwlViTForObjectDetection)
        model = cls.from_pretrained(source, local_files_only=local)
        processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=local)
    except ModelLoadError:
        raise
    except Exception as exc:  # hub, file and format errors come in many types
        raise ModelLoadError(_explain(spec, exc, local)) from exc
    model.eval().to(_device(device))
    return OwlDetector(model, processor, spec)


def _source(spec: str) -> tuple[str, bool]:
    spec = spec.strip()
    if not spec:
        raise ModelLoadError("The OWL model spec is empty; give a Hugging Face name or a folder.")
    path = Path(spec.removeprefix("local-dir:")).expanduser()
    if spec.startswith("local-dir:") or path.is_dir() or spec.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"OWL model folder {path} has no config.json; save the model and "
                                 "its processor there with save_pretrained.")
        return str(path.resolve()), True
    return spec, False


def _explain(spec: str, exc: Exception, local: bool) -> str:
    text = str(exc)
    reason = (text.strip().splitlines() or [type(exc).__name__])[0][:300]
    offline = not local and any(w in text.lower() for w in (
        "offline", "connection", "resolve", "network", "internet", "huggingface", "hub"))
    why = "it could not be downloaded (no internet access?)" if offline else reason
    return f"Could not load OWL model {spec!r}: {why}. {SAVE_HELP}"


def _offline_if_unreachable() -> None:
    try:  # the CLIP loader's check: fail in a second, not after minutes of retries
        from clipfind.modelspec import _go_offline_if_unreachable
    except ImportError:  # pragma: no cover - renamed
        return
    _go_offline_if_unreachable()


def _device(device: str) -> str:
    from clipfind.encoder import resolve_device

    return resolve_device(device)
