"""Saving a model as a folder that ``--model local-dir:PATH`` loads: open_clip's own
layout (``open_clip_config.json`` + ``open_clip_model.safetensors``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def save_checkpoint(
    model: Any,
    model_cfg: dict[str, Any],
    folder: Path,
    preprocess_cfg: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and config to ``folder`` (atomically per file)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = folder / "open_clip_model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "open_clip_model.safetensors")
    visual = getattr(model, "visual", None)
    pre = dict(preprocess_cfg or {})
    if visual is not None and getattr(visual, "preprocess_cfg", None):
        pre = {**visual.preprocess_cfg, **pre}
    config = {"model_cfg": model_cfg, "preprocess_cfg": pre, **(extra or {})}
    tmp_cfg = folder / "open_clip_config.json.tmp"
    tmp_cfg.write_text(json.dumps(config, indent=2, default=list))
    os.replace(tmp_cfg, folder / "open_clip_config.json")
    return folder
