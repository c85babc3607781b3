"""What each detector costs per image on the CPU, as a ratio against one CLIP image
encoding measured in the same run (benchmarks/detect_bench.py's unit).

Rows, all with three text queries on one photo (a coco-mini picture when present):

* ``clip``: the CLIP detector (search/detect/detector.py) on a ViT-B-32 with seeded
  random weights (the same compute as real ones);
* ``owlv2-tiny`` / ``owlvit-tiny``: the tests' tiny random OWL models (tests/owl_models.py),
  saved and loaded through clipfind's real path: what the plumbing costs;
* ``owlvit-base`` / ``owlv2-base``: full-size random-init models from transformers'
  default configs (OWL-ViT B/32 at 768 px, OWLv2 B/16 at 960 px: the compute of
  ``google/owlvit-base-patch32`` and ``google/owlv2-base-patch16-ensemble``), built
  here with no download (``--no-base`` skips them).

``warm`` is the median per-image time once the queries' text embeddings are cached (a
page of ``--locate`` results, an evaluation); ``cold`` is the first call, which also
runs the text tower on the three queries as one batch. By example, ``cold`` includes the
example picture's own image pass, and ``warm`` reuses its embedding (``search --example
--locate`` over a page).

    .venv/bin/python -m benchmarks.owl_bench [--repeat 3] [--no-base]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

QUERIES = ["a dog", "a person on a bicycle", "a red car"]


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(first call, median of ``repeat`` further calls) in seconds."""
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return cold, statistics.median(runs)


def clip_rows(image: Image.Image, repeat: int) -> tuple[float, dict[str, tuple[float, float]]]:
    from benchmarks.common import model_spec
    from clipfind.encoder import ClipEncoder
    from clipfind.search.detect.detector import detect

    encoder = ClipEncoder(model_spec(), device="cpu")
    _, single = _timed(lambda: encoder.encode_images([image]), repeat)
    return single, {"clip": _timed(lambda: detect(encoder, image, QUERIES), repeat)}


def owl_detector(kind: str, size: str, folder: Path) -> Any:
    """A tiny model through clipfind's loader, or a full-size random one in memory."""
    from clipfind.search.detect.owl import OwlDetector, load_owl
    from tests.owl_models import save_tiny_owl, tiny_processor

    if size == "tiny":
        return load_owl(str(save_tiny_owl(kind, folder)))
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if kind == "owlv2":
        # google/owlv2-base-patch16-ensemble: B/16 at 960 px (the library default is 768)
        model = tf.Owlv2ForObjectDetection(tf.Owlv2Config(vision_config={"image_size": 960}))
        images = tf.Owlv2ImageProcessor()  # 960 px
    else:
        model = tf.OwlViTForObjectDetection(tf.OwlViTConfig())
        images = tf.OwlViTImageProcessor()  # 768 px
    return OwlDetector(model.eval(), tiny_processor(kind, images, folder), f"{kind}-base (random)")


def owl_rows(image: Image.Image, repeat: int, base: bool) -> dict[str, tuple[float, float]]:
    rows = {}
    sizes = ("tiny", "base") if base else ("tiny",)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for kind in ("owlvit", "owlv2"):
                detector = owl_detector(kind, size, Path(tmp) / f"{kind}-{size}")
                rows[f"{kind}-{size}"] = _timed(lambda d=detector: d.detect(image, QUERIES), repeat)
                example = image.crop((0, 0, image.width // 3, image.height // 3))
                t0 = time.perf_counter()  # cold: the example's own image pass, then the search
                query = detector.example_embedding(example)
                detector.detect_example(image, query)
                cold = time.perf_counter() - t0
                _, warm = _timed(lambda d=detector, q=query: d.detect_example(image, q), repeat)
                rows[f"{kind}-{size} by example"] = (cold, warm)
                del detector
    return rows


def _image() -> Image.Image:
    from benchmarks.common import COCO_MINI
    from clipfind.imageio import load_image

    photos = sorted(COCO_MINI.glob("val2017/*.jpg"))
    return load_image(photos[0]).image if photos else Image.new("RGB", (640, 480), (120, 140, 160))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-base", action="store_true", help="skip the full-size OWL models")
    args = parser.parse_args()
    import torch

    image = _image()
    single, rows = clip_rows(image, args.repeat)
    rows.update(owl_rows(image, args.repeat, not args.no_base))
    after, _ = clip_rows(image, args.repeat)  # again: a busy machine shows as a spread
    print(f"image {image.width}x{image.height}, {len(QUERIES)} queries, {torch.get_num_threads()} "
          f"CPU threads; one CLIP ViT-B-32 image encoding: {single * 1000:.1f} ms "
          f"(at the end of the run: {after * 1000:.1f} ms)")
    print(f"  {'detector':<26} {'warm ms':>9} {'ratio':>7} {'cold ms':>9} {'ratio':>7}")
    for name, (cold, warm) in rows.items():
        print(f"  {name:<26} {warm * 1000:9.1f} {warm / single:7.2f} {cold * 1000:9.1f} "
              f"{cold / single:7.2f}")


if __name__ == "__main__":
    main()
