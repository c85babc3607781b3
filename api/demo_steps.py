"""The demo's classification and detection steps (:data:`STEPS`, run in order by
:func:`clipfind.api.demo.run_demo`): each runs a zero-shot feature on the demo collection
and scores it against what the synthetic pictures are known to show."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipfind.config import Settings

# Background words the reference model was trained on, for an honest "none of these".
BACKGROUND = ("a plain grey background", "an empty white background", "a black background")
SCENES = 10
SCENE_SIZE = 160


@dataclass(frozen=True)
class DemoSection:
    """A titled block of lines printed by the CLI (one per step)."""

    title: str
    lines: list[str]


@dataclass
class DemoContext:
    """What the demo built, for the steps to use."""

    settings: Settings
    model_dir: Path
    photos: Path
    labels: dict[str, str]  # photo path -> "red circle"
    collection: Any = None
    encoder: Any = None
    clip: Any = None  # the clipfind.library.Clipfind the steps call


def label_step(ctx: DemoContext) -> DemoSection:
    """Label the whole collection from stored vectors and compare with the manifest."""
    from clipfind.search.zeroshot.labeling import label_rows
    from clipfind.training.synthetic import ALL_COMBOS

    labels = [f"{colour} {shape}" for colour, shape in ALL_COMBOS]
    summary = ctx.clip.label("demo-shapes", labels, background=BACKGROUND)
    given = {row.path: row.label for row in label_rows(ctx.collection.catalog, "demo-shapes")}
    right = sum(1 for path, truth in ctx.labels.items() if given.get(path) == truth)
    return DemoSection("zero-shot labeling (clipfind label, from stored vectors)", [
        f"{len(ctx.labels)} photos × {len(labels)} labels in {summary.seconds:.2f}s: "
        f"{right}/{len(ctx.labels)} labelled correctly, {summary.none_of_these} 'none of these'",
        f"try: clipfind labels show demo-shapes --collection {ctx.settings.collection} "
        f"--data-dir {shlex.quote(str(ctx.settings.data_dir))}",
    ])


def detect_step(ctx: DemoContext) -> DemoSection:
    """Find one queried shape among distractors in a few synthetic scenes."""
    from clipfind.search.detect.proposals import iou
    from clipfind.training.synthetic import ALL_COMBOS, render_scene

    rng = np.random.default_rng(7)
    found, lines = 0, []
    for i in range(SCENES):
        picks = rng.choice(len(ALL_COMBOS), size=2, replace=False)
        objects = [ALL_COMBOS[j] for j in picks]
        image, truth = render_scene(objects, SCENE_SIZE, rng)
        query, box = truth[0]
        hits = ctx.clip.detect(image, [query], max_boxes=1).detections
        overlap = float(iou(_box(hits[0].box), box)[0, 0]) if hits else 0.0
        found += overlap >= 0.5
        if i < 3:
            path = Path(ctx.settings.data_dir) / f"demo-scene-{i}.png"
            image.save(path)
            got = f"box {_fmt(hits[0].box)} score {hits[0].score:.2f}" if hits else "no box"
            other = truth[1][0]
            article = "an" if other[0] in "aeiou" else "a"
            lines.append(f"{path.name}: '{query}' next to {article} {other} → {got}, IoU {overlap:.2f}")
    lines.insert(0, f"{found}/{SCENES} scenes: the queried shape boxed with IoU ≥ 0.5")
    return DemoSection("zero-shot detection (clipfind detect)", lines)


def _box(box: object) -> tuple[float, float, float, float]:
    return (box.xmin, box.ymin, box.xmax, box.ymax)  # type: ignore[attr-defined]


def _fmt(box: object) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in _box(box)) + ")"


STEPS: list[Callable[[DemoContext], DemoSection]] = [label_step, detect_step]
