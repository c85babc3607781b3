"""The encoder's engine: which towers ONNX Runtime runs, found or made how.

:func:`cold_text` finds a ready export without torch (a one-shot text query);
:func:`prepare` is the torch path: export if needed, check the export against the loaded
model (every time a model is loaded), choose. Either way one :class:`Engine` says what
encodes images and texts, and one log line says why a tower fell back to torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfind.engine_policy import MIN_TEXT_COSINE, Choice, choose
from clipfind.onnx_cache import Manifest, find_export
from clipfind.onnx_towers import OnnxTowers, available

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engine:
    """``towers``: the ONNX Runtime sessions (None: torch for everything); ``choice``:
    which tower runs where; ``reason``: why torch, when it is torch."""

    towers: OnnxTowers | None
    choice: Choice
    reason: str = ""

    @property
    def image(self) -> str:
        """ "onnx fp32", "onnx int8" or "torch": what encodes images."""
        return f"onnx {self.choice.image}" if self.towers and self.choice.image else "torch"

    @property
    def text(self) -> str:
        return f"onnx {self.choice.text}" if self.towers and self.choice.text else "torch"


TORCH = Engine(None, Choice(None, None))


def _from_manifest(manifest: Manifest, engine: str, text_setting: str) -> Engine:
    choice = choose(manifest.doc, engine, text_setting, MIN_TEXT_COSINE)
    for note in choice.notes:
        log.warning("%s", note)
    if choice.image is None and choice.text is None:
        return Engine(None, choice, "; ".join(choice.notes) or "no tower passed its check")
    return Engine(OnnxTowers(manifest, choice.image, choice.text), choice)


def cold_text(spec: str, cache: Path, engine: str, text_setting: str) -> Engine | None:
    """An engine whose text tower runs without torch: a complete export of ``spec``'s
    current checkpoint whose text tower passed its check and whose tokenizer is the plain
    CLIP BPE. None: the caller loads the model (and exports for next time)."""
    if engine == "torch" or not available():
        return None
    manifest = find_export(cache, spec)
    if manifest is None or manifest.tokenizer_context is None:
        return None
    found = _from_manifest(manifest, engine, text_setting)
    return found if found.towers is not None and found.choice.text else None


def prepare(loaded: Any, device: str, cache: Path, engine: str, text_setting: str) -> Engine:
    """The engine for a loaded torch model: ONNX Runtime where its export passes the
    self-check on these weights, torch elsewhere (GPUs, fp16, what does not export)."""
    if engine == "torch":
        return TORCH
    why = None
    if device != "cpu":
        why = f"ONNX Runtime runs on CPU here; {device} uses torch"
    elif not available():
        why = "onnxruntime is not installed (pip install 'clipfind[onnx]'); using torch"
    if why:
        (log.warning if engine == "onnx" else log.info)("%s", why)
        return Engine(None, Choice(None, None), why)
    from clipfind import onnx_export

    try:
        manifest, made_now = onnx_export.export(loaded, cache)
        if not made_now:  # the self-check on load, on these weights
            manifest = Manifest(
                manifest.folder, {**manifest.doc, "check": onnx_export.self_check(loaded, manifest)}
            )
    except Exception as exc:  # a model that does not export: torch, one line why
        why = (
            f"{loaded.spec.spec} does not export to ONNX ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:160]}); using torch"
        )
        log.warning("%s", why)
        return Engine(None, Choice(None, None), why)
    return _from_manifest(manifest, engine, text_setting)
