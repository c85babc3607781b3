"""Benchmark photo sets derived from real COCO photos, cached under benchmarks/out/photos.

* ``jpeg12mp``: 4000x3000 camera-like JPEGs: the photo upscaled, sensor-like noise
  added (so the file compresses like a real photo, ~3-5 MB), quality 92, 4:2:0, EXIF
  with make, model, capture time and orientation;
* ``png``: 1600x1200 PNGs (exports, screenshots: no draft decoding possible);
* ``small``: 640x480 JPEGs as phones share them.

``python -m benchmarks.photos --count 96`` makes them ahead of a benchmark.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import out_dir, source_photos

KINDS = {"jpeg12mp": (4000, 3000), "png": (1600, 1200), "small": (640, 480)}
NOISE_SIGMA = 5.5


def _exif(i: int) -> Image.Exif:
    exif = Image.Exif()
    exif[271] = "Canon"
    exif[272] = "Canon EOS 80D"
    exif[274] = 1
    exif[306] = f"2021:06:{1 + i % 28:02d} 12:{i % 60:02d}:00"
    exif.get_ifd(0x8769)[36867] = exif[306]
    return exif


def _make(job: tuple[str, Path, Path, int]) -> Path:
    kind, src, dest, i = job
    size = KINDS[kind]
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        target = size[0] / size[1]
        if w / h > target:  # crop to 4:3 before scaling, as a camera frame
            nw = int(h * target)
            im = im.crop(((w - nw) // 2, 0, (w - nw) // 2 + nw, h))
        else:
            nh = int(w / target)
            im = im.crop((0, (h - nh) // 2, w, (h - nh) // 2 + nh))
        im = im.resize(size, Image.Resampling.BICUBIC)
    if kind == "jpeg12mp":
        rng = np.random.default_rng(i)
        arr = np.asarray(im, dtype=np.int16)
        arr = arr + rng.normal(0, NOISE_SIGMA, arr.shape).astype(np.int16)
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    tmp = dest.with_suffix(".tmp" + dest.suffix)
    if kind == "png":
        im.save(tmp, "PNG", compress_level=6)
    else:
        im.save(tmp, "JPEG", quality=92, subsampling=2, exif=_exif(i))
    tmp.replace(dest)
    return dest


def photo_set(kind: str, count: int, workers: int = 2) -> Path:
    """The folder of ``count`` photos of ``kind``; made once, reused afterwards."""
    folder = out_dir("photos", f"{kind}-{count}")
    ext = ".png" if kind == "png" else ".jpg"
    sources = source_photos()
    jobs = []
    for i in range(count):
        dest = folder / f"img{i:05d}{ext}"
        if not dest.exists():
            jobs.append((kind, sources[i % len(sources)], dest, i))
    if jobs:
        print(f"generating {len(jobs)} {kind} photos in {folder} ...", flush=True)
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_make, jobs, chunksize=4))
    return folder


def folder_stats(folder: Path) -> dict[str, float]:
    files = [p for p in folder.iterdir() if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    return {"files": len(files), "mean_mb": round(total / max(1, len(files)) / 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    args = parser.parse_args()
    for kind in args.kinds:
        folder = photo_set(kind, args.count)
        print(kind, folder, folder_stats(folder))


if __name__ == "__main__":
    main()
