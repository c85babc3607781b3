"""The project's own reference model: a tiny ViT CLIP taught by :func:`train` on the
synthetic shapes, so retrieval, classification and detection can be checked end to end
with known answers and no downloaded weights.

:func:`ensure_reference_model` trains it once (about two minutes on 2 CPU cores) and
caches it under a folder keyed by a hash of the recipe and the generator version; a
file lock lets parallel processes share one training run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from clipfind.training.model import Augment
from clipfind.training.synthetic import GENERATOR_VERSION, ShapesDataset
from clipfind.training.trainer import Progress, TrainConfig, train

log = logging.getLogger(__name__)

# A small ResNet image tower: on CPU it learns shapes (not just colours) several times
# faster per second than a ViT of the same cost, which tends to stall on colour alone.
# Context 32 tokens covers the longest synthetic caption.
MODEL_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 96, "heads": 3, "layers": 2,
                 "mlp_ratio": 2.0},
}
RECIPE = {
    "train_images": 4096, "val_images": 512, "render_size": 32, "seed": 0,
    "group": 8, "empty": 0.08, "pairs": 0.08,
    "epochs": 24, "batch_size": 64, "lr": 2e-3, "weight_decay": 0.05, "warmup": 0.1,
    # One thread: the same weights on every machine whatever its core count (the thread
    # count changes float sums, and a 2-thread run scored 3 points lower), at ~1.3x the time.
    "threads": 1,
}


def recipe_key() -> str:
    """Hash of everything that decides the model's weights."""
    doc = json.dumps({"model": MODEL_CFG, "recipe": RECIPE, "generator": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """``.cache/reference-model`` in the source checkout (shared by tests, benchmarks and
    the demo); the user's cache folder when clipfind is installed without one."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return root / ".cache" / "reference-model"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("clipfind", appauthor=False)) / "reference-model"


def train_reference(out: Path, progress: Progress | None = None, **overrides: object) -> Path:
    """Train the reference model into ``out`` (no caching); ``overrides`` change the
    recipe (for experiments)."""
    recipe = {**RECIPE, **overrides}
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "model_config.json"
    config_path.write_text(json.dumps(MODEL_CFG, indent=2))
    data = ShapesDataset(int(recipe["train_images"]), seed=int(recipe["seed"]),
                         size=int(recipe["render_size"]), group=int(recipe.get("group", 1)),
                         empty=float(recipe.get("empty", 0.0)), pairs=float(recipe.get("pairs", 0.0)))
    val = ShapesDataset(int(recipe["val_images"]), seed=int(recipe["seed"]) + 1,
                        size=int(recipe["render_size"]), random_captions=False)
    cfg = TrainConfig(
        model=str(config_path), out=out, loss="clip", epochs=int(recipe["epochs"]),
        batch_size=int(recipe["batch_size"]), lr=float(recipe["lr"]),
        weight_decay=float(recipe["weight_decay"]), warmup=float(recipe["warmup"]),
        augment=Augment(), seed=int(recipe["seed"]),
        threads=int(recipe["threads"]) if recipe.get("threads") else None,
    )
    if "image_size" in recipe:
        cfg_model = json.loads(config_path.read_text())
        cfg_model["vision_cfg"]["image_size"] = int(recipe["image_size"])
        config_path.write_text(json.dumps(cfg_model))
    train(replace(cfg), data, val, progress=progress)
    (out / "reference.json").write_text(json.dumps(
        {"key": recipe_key(), "recipe": recipe, "generator_version": GENERATOR_VERSION}, indent=2))
    return out


def ensure_reference_model(cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """The cached reference model's folder (load it with ``local-dir:PATH``), training
    it first when the cache holds none for the current recipe."""
    from filelock import FileLock

    cache_dir = (cache_dir or default_cache_dir()).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / recipe_key()
    if (final / "reference.json").is_file():
        return final
    with FileLock(str(cache_dir / f"{recipe_key()}.lock")):
        if (final / "reference.json").is_file():  # another process finished meanwhile
            return final
        log.info("training the reference model into %s (about two minutes)", final)
        work = cache_dir / f"{recipe_key()}.partial"
        shutil.rmtree(work, ignore_errors=True)
        train_reference(work, progress)
        (work / "train_state.pt").unlink(missing_ok=True)  # optimizer state: not needed
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    return final
