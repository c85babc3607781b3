"""Which detector answers a detection: the collection's own CLIP (``clip``) or an OWL
model (``owlvit``, ``owlv2``; search/detect/owl.py), and the loaded OWL models.

Every detector has one method, ``detect(image, queries, threshold, max_boxes)`` →
best-first :class:`~clipfind.search.detect.detector.Detection` s in the image's pixels,
so the size policy (search/detect/picture.py), ``--locate`` and the evaluation take any
of them. OWL models are loaded once per process (the HTTP app answers many requests).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from clipfind.errors import QueryError
from clipfind.search.detect.detector import Detection, detect

if TYPE_CHECKING:
    from PIL import Image

    from clipfind.search.detect.owl import OwlDetector

DETECTORS = ("clip", "owlvit", "owlv2")
_loaded: dict[tuple[str, str, str | None], OwlDetector] = {}
_load_lock = threading.Lock()


class Detector(Protocol):
    def detect(self, image: Image.Image, queries: list[str], threshold: float | None = None,
               max_boxes: int = 10) -> list[Detection]: ...


@dataclass(frozen=True)
class ClipDetector:
    """The CLIP detector (search/detect/detector.py) on ``encoder``."""

    encoder: Any
    name: str = "clip"

    def detect(self, image: Image.Image, queries: list[str], threshold: float | None = None,
               max_boxes: int = 10) -> list[Detection]:
        return detect(self.encoder, image, queries, threshold, max_boxes)


@dataclass(frozen=True)
class ExampleDetector:
    """OWL's image-guided detection with one example, embedded once (``queries`` are
    ignored: every box is labelled ``label``)."""

    owl: OwlDetector
    query: Any = field(repr=False)
    label: str = "example"
    name: str = "example"

    def detect(self, image: Image.Image, queries: list[str] | None = None,
               threshold: float | None = None, max_boxes: int = 10) -> list[Detection]:
        return self.owl.detect_example(image, self.query, threshold, max_boxes, label=self.label)


def detector_kind(requested: str | None, settings: Any) -> str:
    """``requested`` (``--detector``), else the ``detector`` setting, else ``owl`` when
    an ``owl_model`` is set (its family decides), else ``clip``."""
    kind = requested or getattr(settings, "detector", None)
    if kind is None:
        return "owl" if getattr(settings, "owl_model", None) else "clip"
    kind = str(kind).strip().lower()
    if kind not in DETECTORS:
        raise QueryError(f"unknown detector {requested!r}: choose one of {', '.join(DETECTORS)}")
    return kind


def owl_detector(kind: str, settings: Any) -> OwlDetector:
    """The OWL model for ``kind`` (``owlvit``, ``owlv2`` or ``owl``: whatever
    ``owl_model`` is), loaded once per process."""
    from clipfind.search.detect.owl import DEFAULT_OWL_MODELS, load_owl

    spec = getattr(settings, "owl_model", None) or DEFAULT_OWL_MODELS.get(kind)
    if spec is None:
        raise QueryError("no OWL model configured: pass --detector owlv2 or owlvit, or --owl-model")
    family = kind if kind in DEFAULT_OWL_MODELS else None
    device = str(getattr(settings, "device", "cpu"))
    key = (spec, device, family)
    with _load_lock:
        if key not in _loaded:
            _loaded[key] = load_owl(spec, device, family)
        return _loaded[key]


def make_detector(requested: str | None, settings: Any, encoder: Any | None = None,
                  example: Image.Image | None = None, example_label: str = "example") -> Detector:
    """The detector a request asks for. ``encoder`` is needed (and only used) for CLIP;
    an ``example`` picture means OWL's image-guided detection (CLIP cannot: refused)."""
    kind = detector_kind(requested, settings)
    if example is not None:
        if kind == "clip":
            raise QueryError("finding things like an example picture needs an OWL detector: "
                             "pass --detector owlv2 (or owlvit), or --owl-model")
        owl = owl_detector(kind, settings)
        return ExampleDetector(owl, owl.example_embedding(example), example_label)
    if kind == "clip":
        if encoder is None:
            raise QueryError("the CLIP detector needs the collection's model")
        return ClipDetector(encoder)
    return owl_detector(kind, settings)
