"""Model specs as open_clip names them, and loading them with a clear offline error.

A spec is one string:

* ``NAME/PRETRAINED`` – an open_clip architecture and pretrained tag
  (``ViT-B-32/laion2b_s34b_b79k``);
* ``hf-hub:ORG/REPO`` – an open_clip checkpoint on the Hugging Face hub;
* ``local-dir:PATH`` – a folder with ``open_clip_config.json`` and
  ``open_clip_model.safetensors`` (what ``clipfind train`` writes);
* ``NAME`` alone – an architecture with random weights, allowed only for configs that
  have no pretrained tags (tests and training from scratch).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfind.errors import ModelLoadError
from clipfind.fastload import fast_weights

log = logging.getLogger(__name__)

LOCAL_HELP = (
    "Without internet access, save the model once (open_clip_config.json + "
    "open_clip_model.safetensors in a folder) and pass --model local-dir:PATH."
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``model_name`` and ``pretrained`` as open_clip takes them."""

    spec: str
    model_name: str
    pretrained: str | None

    @property
    def is_local(self) -> bool:
        return self.model_name.startswith("local-dir:")

    @property
    def has_weights(self) -> bool:
        """Whether the spec names weights (a tag, a file, a hub repo or a folder); an
        architecture alone gets seeded random weights."""
        return self.pretrained is not None or self.model_name.startswith(("hf-hub:", "local-dir:"))


def parse_spec(spec: str) -> ModelSpec:
    """Split a spec string into open_clip's ``(model_name, pretrained)``."""
    spec = spec.strip()
    if not spec:
        raise ModelLoadError("The model spec is empty. " + LOCAL_HELP)
    if spec.startswith("local-dir:"):
        path = Path(spec.removeprefix("local-dir:")).expanduser().resolve()
        return ModelSpec(f"local-dir:{path}", f"local-dir:{path}", None)
    if spec.startswith("hf-hub:"):
        return ModelSpec(spec, spec, None)
    name, _, tag = spec.partition("/")
    return ModelSpec(spec, name, tag or None)


class LoadedModel:
    """An open_clip model ready for inference, with what the encoder needs beside it.

    The tokenizer is built on first use: open_clip's BPE tokenizer takes a few hundred
    milliseconds to read its vocabulary, which a command that encodes only images (an
    index run, an image query) never needs."""

    def __init__(self, model: Any, preprocess: Any, spec: ModelSpec,
                 tokenizer: Any = None) -> None:
        self.model = model
        self.preprocess = preprocess
        self.spec = spec
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = load_tokenizer(self.spec)
        return self._tokenizer


def load_tokenizer(parsed: ModelSpec) -> Any:
    """open_clip's tokenizer for a spec, any failure as one :class:`ModelLoadError`."""
    import open_clip

    try:
        return open_clip.get_tokenizer(parsed.model_name)
    except Exception as exc:  # a hub tokenizer that cannot be fetched, a bad config
        raise ModelLoadError(_explain(parsed, exc)) from exc


def load_model(spec: str, device: str, precision: str) -> LoadedModel:
    """Build the model and its eval transform (the tokenizer follows on first use); any
    failure becomes one :class:`ModelLoadError` sentence that names the spec."""
    import open_clip
    import torch

    parsed = parse_spec(spec)
    _check_known(parsed, open_clip)
    if not parsed.is_local:
        _go_offline_if_unreachable()
    try:
        if parsed.has_weights:
            # Every weight comes from the checkpoint: skip the random draws open_clip
            # would overwrite, and keep the memory-mapped tensors (clipfind.fastload).
            with fast_weights():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    parsed.model_name, pretrained=parsed.pretrained, device=device,
                    precision=precision, require_pretrained=True)
        else:
            log.warning("model %s has no pretrained tag: random weights", parsed.model_name)
            torch.manual_seed(0)  # the same random model in every process
            model, _, preprocess = open_clip.create_model_and_transforms(
                parsed.model_name, device=device, precision=precision)
    except ModelLoadError:
        raise
    except Exception as exc:  # open_clip/hub raise many types; the user needs one sentence
        raise ModelLoadError(_explain(parsed, exc)) from exc
    model.eval()
    return LoadedModel(model, preprocess, parsed)


def _go_offline_if_unreachable(timeout: float = 3.0) -> None:
    """Without a route to the hub, switch huggingface_hub to offline mode at once: cached
    weights still load, missing ones fail in a second instead of after minutes of retries."""
    import os
    import socket

    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return
    if constants.HF_HUB_OFFLINE:
        return
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
    except OSError:
        log.info("cannot reach %s: loading models from the local cache only", host)
        constants.HF_HUB_OFFLINE = True


def _check_known(parsed: ModelSpec, open_clip: Any) -> None:
    if parsed.model_name.startswith(("hf-hub:", "local-dir:")):
        if parsed.is_local:
            folder = Path(parsed.model_name.removeprefix("local-dir:"))
            if not (folder / "open_clip_config.json").is_file():
                raise ModelLoadError(
                    f"Model folder {folder} has no open_clip_config.json; "
                    "it should hold open_clip_config.json and open_clip_model.safetensors."
                )
            weights = [*folder.glob("open_clip_model.safetensors"),
                       *folder.glob("open_clip_pytorch_model.bin")]
            if not weights:
                raise ModelLoadError(
                    f"Model folder {folder} has a config but no weights "
                    "(open_clip_model.safetensors); refusing to use random weights."
                )
        return
    if parsed.model_name not in open_clip.list_models():
        raise ModelLoadError(
            f"Unknown model architecture {parsed.model_name!r} in spec {parsed.spec!r}; "
            "run `python -c 'import open_clip; print(open_clip.list_pretrained())'` "
            "for the known NAME/PRETRAINED pairs. " + LOCAL_HELP
        )
    tags = open_clip.list_pretrained_tags_by_model(parsed.model_name)
    if parsed.pretrained is None and tags:
        raise ModelLoadError(
            f"Model {parsed.model_name!r} needs a pretrained tag, e.g. "
            f"{parsed.model_name}/{tags[0]} (known: {', '.join(tags)})."
        )
    clean = [t.lower().replace("-", "_") for t in tags]
    tag = parsed.pretrained
    if tag and tags and tag.lower().replace("-", "_") not in clean and not Path(tag).is_file():
        raise ModelLoadError(
            f"Unknown pretrained tag {tag!r} for model {parsed.model_name!r} in spec "
            f"{parsed.spec!r} (known: {', '.join(tags)}). " + LOCAL_HELP
        )


def _explain(parsed: ModelSpec, exc: Exception) -> str:
    # One line, but the whole reason: a strict load names the missing keys on line two.
    reason = " ".join(str(exc).split())[:300].rstrip(".") or type(exc).__name__
    offline = not parsed.is_local and any(
        word in str(exc).lower()
        for word in ("offline", "connection", "resolve", "network", "hub", "huggingface")
    )
    if offline:
        return (f"Could not load model {parsed.spec!r}: it could not be downloaded "
                f"(no internet access?). {LOCAL_HELP}")
    advice = "" if parsed.is_local else " " + LOCAL_HELP
    return f"Could not load model {parsed.spec!r}: {reason}.{advice}"
