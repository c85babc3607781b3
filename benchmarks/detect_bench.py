"""Zero-shot detection: what it costs, and how well each dense method localises.

Cost: one image, three queries, with a ViT-B-32 (seeded random weights cost the same
compute as real ones). ``ratio`` = (detect time − time spent encoding the proposal crops)
/ one ordinary image encoding; the target is ≤ ~3. Text vectors are cached by the
encoder, so the first ("cold") call also pays for encoding the queries and the
background prompts.

Quality (``--scenes N``): the synthetic-shapes checks of
:func:`search.evaluate_detection.evaluate_scenes` with the reference model, for each
dense method (ClearCLIP, SCLIP, MaskCLIP) and for sliding windows.

    .venv/bin/python -m benchmarks.detect_bench                    # cost only
    .venv/bin/python -m benchmarks.detect_bench --scenes 60 --reference .cache/reference-model/KEY
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

QUERIES = ["a dog", "a person on a bicycle", "a red car"]


class TimedEncoder:
    """Wraps an encoder; counts and times ``encode_images`` (detect's crop encodings)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.crops = 0
        self.crop_seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode_images(self, images: Any) -> Any:
        t0 = time.perf_counter()
        out = self.inner.encode_images(images)
        self.crop_seconds += time.perf_counter() - t0
        self.crops += len(images)
        return out


def bench_cost(spec: str, image: Image.Image, repeat: int) -> dict[str, float]:
    from clipfind.encoder import ClipEncoder
    from clipfind.search.detect.detector import detect

    encoder = ClipEncoder(spec, device="cpu")
    encoder.encode_images([image])  # load + warm up
    singles = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        encoder.encode_images([image])
        singles.append(time.perf_counter() - t0)
    single = statistics.median(singles)
    rows = {}
    for label in ("cold", *(f"warm{i}" for i in range(repeat))):
        timed = TimedEncoder(encoder)
        t0 = time.perf_counter()
        dets = detect(timed, image, QUERIES)
        total = time.perf_counter() - t0
        rows[label] = (total, timed.crop_seconds, timed.crops, len(dets))
    warm = [v for k, v in rows.items() if k != "cold"]
    total = statistics.median(v[0] for v in warm)
    crops = statistics.median(v[1] for v in warm)
    cold = rows["cold"]
    return {
        "single_ms": single * 1000, "detect_ms": total * 1000, "crops_ms": crops * 1000,
        "crops": warm[0][2], "ratio": (total - crops) / single,
        "cold_ms": cold[0] * 1000, "cold_ratio": (cold[0] - cold[1]) / single,
    }


def bench_quality(reference: Path, scenes: int, seed: int) -> list[tuple[str, dict[str, float], float]]:
    from clipfind.encoder import ClipEncoder
    from clipfind.search.detect.detector import DetectOptions
    from clipfind.training.evaluate_detection import evaluate_scenes

    encoder = ClipEncoder(f"local-dir:{reference}", device="cpu")
    base = DetectOptions()
    from clipfind.search.detect.dense import tower_kind

    kind = tower_kind(encoder)
    variants = {f"dense-{kind}": base, "windows": replace(base, use_dense=False)}
    if kind == "vit":  # the attention variants only differ on a ViT
        variants = {"clearclip": base, "sclip": replace(base, dense_mode="sclip"),
                    "maskclip": replace(base, dense_mode="maskclip"), **variants}
        del variants["dense-vit"]
    out = []
    for name, opts in variants.items():
        t0 = time.perf_counter()
        metrics = evaluate_scenes(encoder, n=scenes, seed=seed, options=opts)
        out.append((name, metrics, (time.perf_counter() - t0) / scenes / 2))
    return out


def _image(path: str | None) -> Image.Image:
    from benchmarks.common import COCO_MINI
    from clipfind.imageio import load_image

    if path:
        return load_image(Path(path)).image
    photos = sorted(COCO_MINI.glob("val2017/*.jpg"))
    if photos:
        return load_image(photos[0]).image
    return Image.new("RGB", (640, 480), (120, 140, 160))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="open_clip spec (default: ViT-B-32, random weights)")
    parser.add_argument("--image", help="image to detect in (default: a coco-mini photo)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=0, help="synthetic scenes per method")
    parser.add_argument("--reference", type=Path, help="reference model folder (default: "
                        "the cached one, trained if missing)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.repeat > 0:
        from benchmarks.common import model_spec

        spec = args.model or model_spec()
        image = _image(args.image)
        cost = bench_cost(spec, image, args.repeat)
        print(f"model {spec}, image {image.width}x{image.height}, {len(QUERIES)} queries")
        print(f"  one image encoding      {cost['single_ms']:8.1f} ms")
        print(f"  detect (warm)           {cost['detect_ms']:8.1f} ms, of which "
              f"{cost['crops']} crops {cost['crops_ms']:.1f} ms")
        print(f"  ratio (detect - crops) / one encoding: {cost['ratio']:.2f} (target <= ~3)")
        print(f"  first call (encodes the texts too): {cost['cold_ms']:.1f} ms, "
              f"ratio {cost['cold_ratio']:.2f}")
    if args.scenes:
        from clipfind.training.reference import shipped_reference_model

        reference = args.reference or shipped_reference_model()
        print(f"\nsynthetic scenes with {reference} ({args.scenes} scenes, seed {args.seed})")
        print(f"  {'method':<13} {'found':>6} {'clean':>6} {'absent':>6} {'s/detect':>9}")
        for name, m, secs in bench_quality(reference, args.scenes, args.seed):
            print(f"  {name:<13} {m['found']:6.2f} {m['clean']:6.2f} {m['absent_clean']:6.2f} "
                  f"{secs:9.3f}")


if __name__ == "__main__":
    main()
