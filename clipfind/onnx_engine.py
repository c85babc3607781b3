"""The encoder's engine: which towers ONNX Runtime runs, found or made how.

:func:`cold_text` finds a ready export without torch (a one-shot text query, and, with
:func:`cold_images`, an index run on a CPU);
:func:`prepare` is the torch path: export if needed, check the export against the loaded
model (every time a model is loaded), choose. Either way one :class:`Engine` says what
encodes images and texts, and one log line says why a tower fell back to torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipfind.engine_policy import MIN_IMAGE_COSINE, MIN_TEXT_COSINE, Choice, choose
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
    export_s: float = 0.0  # seconds this process spent exporting the towers (once per model)

    @property
    def image(self) -> str:
        """ "onnx fp32", "onnx int8" or "torch": what encodes images."""
        return f"onnx {self.choice.image}" if self.towers and self.choice.image else "torch"

    @property
    def text(self) -> str:
        return f"onnx {self.choice.text}" if self.towers and self.choice.text else "torch"


TORCH = Engine(None, Choice(None, None))


def _from_manifest(manifest: Manifest, engine: str, text_setting: str, export_s: float = 0.0) -> Engine:
    choice = choose(manifest.doc, engine, text_setting, MIN_TEXT_COSINE)
    for note in choice.notes:
        log.warning("%s", note)
    if choice.image is None and choice.text is None:
        return Engine(None, choice, "; ".join(choice.notes) or "no tower passed its check", export_s)
    return Engine(OnnxTowers(manifest, choice.image, choice.text), choice, export_s=export_s)


def _ready(spec: str, cache: Path, engine: str, text_setting: str) -> Engine | None:
    """The engine a complete export of ``spec``'s current checkpoint gives, found without
    torch, or None (no export, ``--engine torch``, no ONNX Runtime)."""
    if engine == "torch" or not available():
        return None
    manifest = find_export(cache, spec)
    if manifest is None:
        return None
    return _from_manifest(manifest, engine, text_setting)


def cold_text(spec: str, cache: Path, engine: str, text_setting: str) -> Engine | None:
    """An engine whose text tower runs without torch: a complete export of ``spec``'s
    current checkpoint whose text tower passed its check and whose tokenizer is the plain
    CLIP BPE. None: the caller loads the model (and exports for next time)."""
    found = _ready(spec, cache, engine, text_setting)
    if found is None or found.towers is None or found.towers.manifest.tokenizer_context is None:
        return None
    return found if found.choice.text else None


def cold_images(text: Engine | None, forced: bool = False) -> bool:
    """Whether the torch-free ``text`` engine (:func:`cold_text`) encodes images too: its
    image tower passed its check, the model's transform replays without torch
    (:mod:`clipfind.pixels`), the export names the checkpoint files it was made from,
    and the tower, run now on the probe pictures, still gives the torch vectors the
    export recorded for these weights (the self-check on load, without torch; a tower
    file damaged or swapped since fails it: one warning, then torch decides)."""
    if text is None or text.towers is None or not text.choice.image:
        return False
    doc = text.towers.manifest.doc
    recorded = doc.get("probe_image_vectors")
    if not (doc.get("transform") and doc.get("files") and recorded):
        return False
    import numpy as np

    from clipfind.onnx_towers import normalise
    from clipfind.pixels import ArrayTransform, probe_pictures

    replay = ArrayTransform(doc["transform"])
    try:
        got = normalise(text.towers.encode_pixels(np.stack([replay(p) for p in probe_pictures()])))
    except Exception as exc:  # a tower that no longer loads: torch decides, and says so
        log.warning("ONNX image tower does not run (%s); checking with torch", exc)
        return False
    cosine = float((got * np.asarray(recorded, np.float32)).sum(1).min())
    if cosine < MIN_IMAGE_COSINE:
        log.warning("ONNX image tower gives probe cosine %.4f < %s on this machine; %s", cosine,
                    MIN_IMAGE_COSINE, "used as asked" if forced else "checking with torch")
        return forced
    return True


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
    spent = float(manifest.doc.get("export_s", 0.0)) if made_now else 0.0
    return _from_manifest(manifest, engine, text_setting, spent)
