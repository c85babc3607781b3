"""Shared helpers for the benchmark scripts: a ViT-B-32 checkpoint with random weights,
realistic camera photos, timing statistics, a table printer and JSON output.

Everything generated is cached under ``benchmarks/out/`` (gitignored).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
COCO_MINI = ROOT.parent / "shared" / "data" / "coco-mini"
MODEL_NAME = "ViT-B-32"


def out_dir(*parts: str) -> Path:
    path = OUT.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def vit_b32_checkpoint(name: str = MODEL_NAME) -> Path:
    """A local-dir checkpoint of ``name`` with seeded random weights (the real weights
    cannot be downloaded here; random weights cost exactly the same compute)."""
    folder = OUT / "models" / name
    if (folder / "open_clip_model.safetensors").is_file():
        return folder
    import open_clip
    import torch

    from clipfind.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = open_clip.create_model(name)
    save_checkpoint(model, open_clip.get_model_config(name), folder)
    return folder


def model_spec(name: str = MODEL_NAME) -> str:
    return f"local-dir:{vit_b32_checkpoint(name)}"


def source_photos(limit: int | None = None) -> list[Path]:
    """Real COCO photos to derive benchmark images from."""
    if not COCO_MINI.is_dir():
        raise SystemExit(f"{COCO_MINI} is missing: the benchmarks derive photos from it")
    photos = sorted(COCO_MINI.glob("*2017/*.jpg"))
    return photos[:limit] if limit else photos


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_calls(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> list[float]:
    """Wall times in milliseconds of ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def latency(times_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(times_ms, 0.5), 3),
        "p95_ms": round(percentile(times_ms, 0.95), 3),
        "mean_ms": round(statistics.fmean(times_ms), 3),
        "n": len(times_ms),
    }


def print_table(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    print(f"\n## {title}")
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def other_load(seconds: float = 1.0) -> float:
    """Fraction of all cores busy during ``seconds`` while this process sleeps: other
    work on the machine that will skew timings (0 = quiet)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except OSError:
        return float("nan")
    return round((busy1 - busy0) / max(1, total1 - total0), 3)


def warn_if_busy() -> float:
    load = other_load()
    if load > 0.1:
        print(f"warning: the machine is {load:.0%} busy with other work; timings will be "
              "noisy (ratios measured side by side are less affected)", flush=True)
    return load


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def write_json(name: str, document: dict[str, Any]) -> Path:
    path = out_dir() / f"{name}.json"
    document = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "machine": machine(), **document}
    path.write_text(json.dumps(document, indent=2, default=str))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path
