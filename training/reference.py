"""The project's own reference model: a tiny CLIP taught by :func:`train` on the
synthetic shapes, so retrieval, classification and detection can be checked end to end
with known answers and no downloaded weights.

The model is shipped (package data ``clipfind.data/reference-model``), not trained on
first use: the same recipe trains different weights on CPUs with different vector units
(AVX2 vs AVX-512 float sums), and the quality checks must not depend on which CPU ran
them. :func:`train_reference` reproduces the recipe; :func:`ship_reference_model` turns
a trained folder into the shipped one (``python -m benchmarks.reference_model --retrain
--ship``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import replace
from importlib.resources import files
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


def shipped_reference_model() -> Path:
    """The reference model shipped as package data (``clipfind.data/reference-model``):
    load it with ``local-dir:PATH``. It is the same file on every machine, so the quality
    figures measured on it hold everywhere up to the CPU's float rounding at inference."""
    folder = Path(str(files("clipfind.data") / "reference-model"))
    if not (folder / "open_clip_model.safetensors").is_file():
        raise FileNotFoundError(f"the shipped reference model is missing from {folder}")
    return folder


def trained_token_ids(recipe: dict[str, object] | None = None) -> set[int]:
    """Token ids of every caption the recipe's training run shows the model, over all
    epochs, plus start and end of text: the only rows of the token embedding that get a
    gradient (padding after the end token is masked out by the causal attention)."""
    from open_clip.tokenizer import SimpleTokenizer

    recipe = {**RECIPE, **(recipe or {})}
    data = ShapesDataset(int(recipe["train_images"]), seed=int(recipe["seed"]),
                         size=int(recipe["render_size"]), group=int(recipe.get("group", 1)),
                         empty=float(recipe.get("empty", 0.0)), pairs=float(recipe.get("pairs", 0.0)))
    captions: set[str] = set()
    for epoch in range(int(recipe["epochs"])):
        data.set_epoch(epoch)
        captions.update(data.caption(i) for i in range(len(data)))
    tokenizer = SimpleTokenizer(context_length=int(MODEL_CFG["text_cfg"]["context_length"]))
    ids = tokenizer(sorted(captions))
    return {int(t) for t in ids.unique() if int(t) != 0}


def ship_reference_model(trained: Path, out: Path) -> Path:
    """Copy a trained reference model into ``out`` as the project ships it: float32
    weights, with the token-embedding rows that training never touched set to zero (they
    held only the random initialisation), so git and the wheel compress the file to a
    small fraction of its 20 MB."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(trained / "open_clip_model.safetensors"))
    keep = sorted(trained_token_ids())
    table = weights["token_embedding.weight"]
    kept = table[keep].clone()
    table.zero_()
    table[keep] = kept
    save_file(weights, str(out / "open_clip_model.safetensors"))
    shutil.copyfile(trained / "open_clip_config.json", out / "open_clip_config.json")
    meta = json.loads((trained / "reference.json").read_text())
    meta["token_rows_kept"] = len(keep)
    (out / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
