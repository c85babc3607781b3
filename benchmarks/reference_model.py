"""Quality (and, with --retrain, training time) of the project's reference model: the
tiny CLIP that `clipfind train`'s code teaches on synthetic shapes.

    .venv/bin/python -m benchmarks.reference_model                   # the shipped model
    .venv/bin/python -m benchmarks.reference_model --retrain         # train afresh, timed
    .venv/bin/python -m benchmarks.reference_model --retrain --ship  # ... and ship it

Zero-shot classification among all 42 colour-shape classes (prompts "a {label}." and
"a photo of a {label}.") on fresh pictures of pairs seen in training and of the 7 pairs
held out of training; text → image recall@1 on one picture per pair.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from clipfind.encoder import ClipEncoder
from clipfind.training.evaluate import class_vectors, zero_shot_scores
from clipfind.training.reference import RECIPE, ship_reference_model, shipped_reference_model, train_reference
from clipfind.training.synthetic import (
    ALL_COMBOS,
    HELD_OUT_COMBOS,
    SEEN_COMBOS,
    ShapesDataset,
    ShapeSpec,
    render,
)

PROMPTS = ["a {}.", "a photo of a {}."]


def zero_shot(encoder: ClipEncoder, combos: tuple[tuple[str, str], ...], n: int,
              seed: int) -> dict[str, float]:
    data = ShapesDataset(n, seed=seed, combos=combos, random_captions=False)
    classes = [f"{c} {s}" for c, s in ALL_COMBOS]
    vecs = encoder.encode_images([data.image(i) for i in range(n)])
    truth = [data.spec(i) for i in range(n)]
    class_vecs = class_vectors(encoder, classes, PROMPTS)
    top1, top5, _ = zero_shot_scores(vecs, class_vecs, [classes.index(s.label) for s in truth], classes)
    pred = [classes[j].split() for j in (vecs @ class_vecs.T).argmax(axis=1)]
    colour = np.mean([p[0] == s.colour for p, s in zip(pred, truth, strict=True)])
    shape = np.mean([p[1] == s.shape for p, s in zip(pred, truth, strict=True)])
    return {"top1": top1, "top5": top5, "colour": float(colour), "shape": float(shape)}


def text_to_image_r1(encoder: ClipEncoder) -> float:
    rng = np.random.default_rng(7)
    size = encoder.image_size
    images = [render(ShapeSpec(c, s, "large", "in the centre", "grey"), size, rng) for c, s in ALL_COMBOS]
    texts = encoder.encode_texts([f"a {c} {s}" for c, s in ALL_COMBOS])
    best = (texts @ encoder.encode_images(images).T).argmax(axis=1)
    return float(np.mean(best == np.arange(len(ALL_COMBOS))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="train afresh into a temporary folder")
    parser.add_argument("--from", dest="trained", type=Path, help="a trained folder to measure (or ship)")
    parser.add_argument("--ship", action="store_true",
                        help="write the trained model (untouched token rows zeroed) to data/reference-model")
    args = parser.parse_args()
    seconds = None
    if args.retrain:
        tmp = Path(tempfile.mkdtemp(prefix="clipfind-ref-"))
        started = time.perf_counter()
        folder = train_reference(tmp / "model")
        seconds = time.perf_counter() - started
    elif args.trained:
        folder = args.trained
    else:
        folder = shipped_reference_model()
    if args.ship:
        shipped = Path(__file__).resolve().parents[1] / "data" / "reference-model"
        folder = ship_reference_model(folder, shipped)
    encoder = ClipEncoder(f"local-dir:{folder}", device="cpu")
    seen = zero_shot(encoder, SEEN_COMBOS, 420, seed=201)
    held = zero_shot(encoder, HELD_OUT_COMBOS, 280, seed=202)
    print(f"model: local-dir:{folder}")
    print(f"recipe: {RECIPE}")
    if seconds is not None:
        print(f"trained from scratch in {seconds:.0f} s")
    for name, r in (("seen pairs", seen), ("held-out pairs", held)):
        print(f"{name:>15}: top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  "
              f"(colour right {r['colour']:.3f}, shape right {r['shape']:.3f})")
    print(f"text → image recall@1 (42 pictures, one per pair): {text_to_image_r1(encoder):.3f}")


if __name__ == "__main__":
    main()
