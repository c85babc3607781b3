"""Building a trainable open_clip model from a spec or a config file, and the image
transforms it trains with."""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfind.errors import ModelLoadError

log = logging.getLogger(__name__)


@dataclass
class Trainable:
    """A model in fp32 with what training and saving need beside it."""

    model: Any
    model_cfg: dict[str, Any]
    tokenizer: Any
    preprocess_cfg: dict[str, Any]
    source: str


@dataclass(frozen=True)
class Augment:
    """Train-time augmentations. The defaults are off: on data where colour and position
    carry meaning (the synthetic shapes), flips and colour jitter change the answer."""

    crop_scale: tuple[float, float] | None = None  # random resized crop, e.g. (0.8, 1.0)
    flip: bool = False
    colour_jitter: float = 0.0  # brightness/contrast/saturation strength; hue untouched


def build_trainable(model: str, seed: int = 0, sigmoid: bool = False) -> Trainable:
    """A model to train: ``model`` is an open_clip spec (``NAME/PRETRAINED``,
    ``hf-hub:...``, ``local-dir:PATH``, a registered config ``NAME`` → random weights) or
    the path of a JSON config (``{"embed_dim", "vision_cfg", "text_cfg"}``) → random
    weights. ``sigmoid`` adds a logit bias when the model has none (SigLIP loss)."""
    import open_clip
    import torch

    path = Path(model).expanduser()
    if model.endswith(".json") or path.is_file():
        name, cfg = _register_config_file(path)
        torch.manual_seed(seed)
        try:
            net = open_clip.create_model(name)
        except Exception as exc:  # open_clip raises many kinds for a bad config
            raise ModelLoadError(f"Cannot build a model from config {path}: {exc}") from exc
        tokenizer = open_clip.get_tokenizer(name)
    else:
        from clipfind.modelspec import load_model

        torch.manual_seed(seed)
        loaded = load_model(model, "cpu", "fp32")
        net, tokenizer = loaded.model, loaded.tokenizer
        cfg = _model_cfg_of(loaded.spec.model_name)
    if sigmoid and getattr(net, "logit_bias", None) is None:
        # SigLIP's initialisation: a strongly negative bias, since most pairs are negatives.
        net.logit_bias = torch.nn.Parameter(torch.tensor(-10.0))
        with torch.no_grad():
            net.logit_scale.fill_(float(torch.log(torch.tensor(10.0))))
        cfg = {**cfg, "init_logit_bias": -10.0}
    pre = dict(getattr(net.visual, "preprocess_cfg", {}) or {})
    pre.setdefault("size", getattr(net.visual, "image_size", 224))
    net.float().train()
    return Trainable(net, cfg, tokenizer, pre, model)


def _register_config_file(path: Path) -> tuple[str, dict[str, Any]]:
    import open_clip

    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Cannot read model config {path}: {exc}") from exc
    cfg = raw.get("model_cfg", raw)
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ModelLoadError(f"{path} is not an open_clip config (needs embed_dim, vision_cfg, text_cfg)")
    # open_clip picks a download-only tokenizer for names containing 'siglip'.
    name = "clipfind-" + re.sub(r"(?i)siglip", "sl", path.stem)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(Path(tmp) / f"{name}.json")
    return name, cfg


def _model_cfg_of(model_name: str) -> dict[str, Any]:
    import open_clip

    if model_name.startswith("local-dir:"):
        raw = json.loads((Path(model_name.removeprefix("local-dir:")) / "open_clip_config.json").read_text())
        return dict(raw.get("model_cfg", raw))
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise ModelLoadError(f"No open_clip config found for {model_name!r}")
    return dict(cfg)


def eval_transform(pre: dict[str, Any]) -> Any:
    """The inference transform, exactly as the encoder builds it for this model."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    keys = PreprocessCfg.__dataclass_fields__
    return image_transform_v2(PreprocessCfg(**{k: v for k, v in pre.items() if k in keys}), is_train=False)


def train_transform(pre: dict[str, Any], aug: Augment) -> Any:
    """The eval transform when no augmentation is asked for, else crop/flip/jitter."""
    if aug == Augment():
        return eval_transform(pre)
    from torchvision import transforms as T

    size = pre.get("size", 224)
    size = tuple(size) if isinstance(size, list | tuple) else (size, size)
    bicubic = T.InterpolationMode.BICUBIC
    ops: list[Any] = []
    if aug.crop_scale:
        ops.append(T.RandomResizedCrop(size, scale=aug.crop_scale, interpolation=bicubic))
    else:
        ops += [T.Resize(min(size), interpolation=bicubic), T.CenterCrop(size)]
    if aug.flip:
        ops.append(T.RandomHorizontalFlip())
    if aug.colour_jitter:
        j = aug.colour_jitter
        ops.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    ops += [lambda im: im.convert("RGB"), T.ToTensor(),
            T.Normalize(pre.get("mean", (0.48145466, 0.4578275, 0.40821073)),
                        pre.get("std", (0.26862954, 0.26130258, 0.27577711)))]
    return T.Compose(ops)
