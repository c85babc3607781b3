"""The end-to-end demo behind ``clipfind demo``: no downloads, answers that are known.

1. the reference model (shipped as package data, ``clipfind.data/reference-model``);
2. a folder of synthetic "photos" (coloured shapes) with a manifest of what each shows;
3. indexing through the real indexer, into a collection named ``demo``;
4. text and image searches, each scored against the manifest.

Then the steps of :data:`clipfind.api.demo_steps.STEPS` (labeling, detection): each is
called with the :class:`DemoContext` and returns a :class:`DemoSection` to print.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipfind.api.demo_steps import STEPS, DemoContext, DemoSection
from clipfind.config import Settings

__all__ = ["DemoContext", "DemoReport", "DemoResult", "DemoSection", "run_demo"]

PHOTO_COUNT = 300
PHOTO_SIZE = 160
PHOTO_SEED = 2024
MANIFEST = "manifest.json"
TEXT_QUERIES = ("a red circle", "a blue square", "a yellow star", "a green triangle", "an orange cross")
# Never seen together in training: the model has to compose colour and shape.
HELD_OUT_QUERIES = ("a blue circle", "a red triangle")
IMAGE_QUERY = ("purple", "diamond")


@dataclass(frozen=True)
class DemoResult:
    """One query: the labels of its top hits and how many match the expected label."""

    query: str
    expected: str
    hits: list[tuple[str, str, float]]  # (path, label, score)
    held_out: bool = False
    available: int = 0  # photos in the collection that show the expected label

    @property
    def correct(self) -> int:
        return sum(1 for _, label, _ in self.hits if label == self.expected)

    @property
    def possible(self) -> int:
        """The most hits that can be correct: k, or fewer when fewer such photos exist."""
        return min(len(self.hits), self.available)


@dataclass(frozen=True)
class DemoReport:
    model_dir: Path
    photos: Path
    indexed: int
    encoded: int
    index_seconds: float
    searches: list[DemoResult]
    sections: list[DemoSection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": f"local-dir:{self.model_dir}", "photos": str(self.photos), "indexed": self.indexed,
            "encoded": self.encoded, "index_seconds": round(self.index_seconds, 2),
            "searches": [{"query": r.query, "expected": r.expected, "correct": r.correct,
                          "possible": r.possible, "k": len(r.hits), "held_out": r.held_out,
                          "hits": [{"path": p, "label": lab, "score": round(s, 4)} for p, lab, s in r.hits]}
                         for r in self.searches],
            "sections": [{"title": s.title, "lines": s.lines} for s in self.sections],
        }


def write_photos(folder: Path, count: int = PHOTO_COUNT, seed: int = PHOTO_SEED,
                 size: int = PHOTO_SIZE) -> dict[str, str]:
    """Write ``count`` shape pictures (all colour-shape pairs, held-out ones included) as
    JPEGs plus a manifest; reuse them when the manifest says they are already there."""
    from clipfind.training.synthetic import ALL_COMBOS, random_spec, render

    manifest = folder / MANIFEST
    if manifest.is_file():
        doc = json.loads(manifest.read_text())
        if doc.get("count") == count and doc.get("seed") == seed:
            return {str(folder / name): label for name, label in doc["labels"].items()}
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for i in range(count):
        spec = random_spec(rng, ALL_COMBOS)
        name = f"photo_{i:04d}.jpg"
        render(spec, size, rng).save(folder / name, quality=92)
        labels[name] = spec.label
    manifest.write_text(json.dumps({"count": count, "seed": seed, "labels": labels}, indent=1))
    return {str(folder / name): label for name, label in labels.items()}


def run_demo(data_dir: Path, progress: Callable[[str, int, int], None] | None = None,
             k: int = 5, count: int = PHOTO_COUNT) -> DemoReport:
    """Build everything and run the searches; ``progress(stage, done, total)``."""
    from clipfind.library import Clipfind
    from clipfind.training.reference import shipped_reference_model

    def report(stage: str) -> Callable[..., None] | None:
        return (lambda done, total, *_: progress(stage, done, total)) if progress else None

    model_dir = shipped_reference_model()
    photos = data_dir.expanduser() / "demo-photos"
    labels = write_photos(photos, count)
    # device, batch size and text precision come from CLIPFIND_* like every command's
    settings = Settings(data_dir=data_dir, collection="demo", model=f"local-dir:{model_dir}")
    with Clipfind(settings) as clip:
        started = time.perf_counter()
        # a new reference recipe is another model: adopt it instead of refusing the collection
        reembed = clip.collection.stored_model not in (None, clip.encoder.spec)
        summary = clip.index([photos], reembed=reembed, progress=report("indexing"))
        index_seconds = time.perf_counter() - started
        searches = [_text_search(clip, q, labels, k, held) for q, held in
                    [*((q, False) for q in TEXT_QUERIES), *((q, True) for q in HELD_OUT_QUERIES)]]
        searches.append(_image_search(clip, data_dir, labels, k))
        ctx = DemoContext(settings, model_dir, photos, labels, clip.collection, clip.encoder, clip)
        sections = [step(ctx) for step in STEPS]
    return DemoReport(model_dir, photos, summary.added + summary.updated + summary.unchanged,
                      summary.encoded, index_seconds, searches, sections)


def _text_search(clip: Any, query: str, labels: dict[str, str], k: int,
                 held_out: bool) -> DemoResult:
    page = clip.search(query, k=k)
    expected = query.split(" ", 1)[1]
    return DemoResult(query, expected, [(h.path, labels.get(h.path, "?"), h.score) for h in page.hits],
                      held_out, sum(1 for v in labels.values() if v == expected))


def _image_search(clip: Any, data_dir: Path, labels: dict[str, str], k: int) -> DemoResult:
    from clipfind.training.synthetic import ShapeSpec, render

    colour, shape = IMAGE_QUERY
    example = data_dir.expanduser() / "demo-example.png"
    spec = ShapeSpec(colour, shape, "large", "in the centre", "white")
    render(spec, PHOTO_SIZE, np.random.default_rng(1)).save(example)
    page = clip.search(images=[str(example)], k=k)
    return DemoResult(f"image: {example.name} ({spec.caption})", spec.label,
                      [(h.path, labels.get(h.path, "?"), h.score) for h in page.hits],
                      available=sum(1 for v in labels.values() if v == spec.label))
