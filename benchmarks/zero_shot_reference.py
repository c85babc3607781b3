"""Zero-shot classification with the project's reference model: ``classify`` against
``eval``'s accuracy, and what the "none of these" background check does.

    .venv/bin/python -m benchmarks.zero_shot_reference

Prints, for synthetic pictures of held-out and of all colour-shape pairs, the top-1
accuracy ``search.evaluate.evaluate_zero_shot`` reports and the accuracy of
``search.classify.classify`` on the same files; then, for two background sets, the
share of shape pictures that keep a label and of blank canvases that get none.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    import torch
    from PIL import Image

    from clipfind.encoder import ClipEncoder
    from clipfind.imageio import load_image
    from clipfind.search.zeroshot.classify import classify, classify_vector
    from clipfind.search.zeroshot.prompts import DEFAULT_BACKGROUND, resolve_templates
    from clipfind.training.data import Labelled
    from clipfind.training.evaluate import evaluate_zero_shot
    from clipfind.training.reference import shipped_reference_model
    from clipfind.training.synthetic import ALL_COMBOS, BACKGROUNDS, HELD_OUT_COMBOS, ShapesDataset

    torch.set_num_threads(1)  # single-image encodes of a tiny model: threads only cost
    enc = ClipEncoder(f"local-dir:{shipped_reference_model()}", device="cpu")
    templates = list(resolve_templates("simple"))
    tmp = Path(tempfile.mkdtemp(prefix="zs-ref-"))
    for name, combos in (("held-out pairs", HELD_OUT_COMBOS), ("all pairs", ALL_COMBOS)):
        data = ShapesDataset(len(combos) * 10, seed=123, combos=combos, random_captions=False)
        paths, labels = [], []
        for i in range(len(data)):
            path = tmp / f"{name[:3]}-{i:04d}.png"
            data.image(i).save(path)
            paths.append(path)
            labels.append(data.spec(i).label)
        labelled = Labelled(paths, labels)
        report = evaluate_zero_shot(enc, labelled, templates)
        hits = [classify(enc, load_image(p, enc.image_size).image, labelled.classes, "simple")[0].label == t
                for p, t in zip(paths, labels, strict=True)]
        print(f"{name}: {len(paths)} pictures, {len(labelled.classes)} classes: "
              f"eval top-1 {report.top1:.3f}, classify top-1 {np.mean(hits):.3f}")
    classes = sorted({f"{c} {s}" for c, s in ALL_COMBOS})
    data = ShapesDataset(84, seed=7, combos=ALL_COMBOS, random_captions=False)
    shapes = enc.encode_images([data.image(i) for i in range(len(data))])
    blanks = enc.encode_images([Image.new("RGB", (64, 64), rgb) for rgb in BACKGROUNDS.values()])
    for background in (list(DEFAULT_BACKGROUND), [f"{b} background" for b in BACKGROUNDS]):
        kept = np.mean([bool(classify_vector(enc, v, classes, "simple", background=background).accepted)
                        for v in shapes])
        none = np.mean([classify_vector(enc, v, classes, "simple", background=background).none_of_these
                        for v in blanks])
        print(f"background {background}: shape pictures labelled {kept:.3f}, "
              f"blank canvases 'none of these' {none:.3f}")


if __name__ == "__main__":
    main()
