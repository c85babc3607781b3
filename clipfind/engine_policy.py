"""Which engine and precision encode each tower, from an export's self-check.

Pure data in, a decision out (no torch, no ONNX Runtime), so the torch-free text path
and the torch path decide the same way from the same recorded probe cosines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENGINES = ("auto", "torch", "onnx")
# Lowest probe cosine to torch fp32 for any text tower that is not torch fp32 (the int8
# torch copy, clipfind/text_int8.py, and the ONNX ones): the cosine at which a collection
# takes a text vector for its own model's (store/collection.py _SAME_MODEL_COSINE), so an
# accepted tower never makes a collection indexed with fp32 refuse its queries. How much
# of a top-10 that keeps: docs/performance.md, "int8 vs fp32 text tower".
MIN_TEXT_COSINE = 0.99
# Lowest probe cosine to torch fp32 for the ONNX image tower.
MIN_IMAGE_COSINE = 0.995
# int8 image towers (ONNX Runtime dynamic quantisation) ran ViT-B-32 2-4x faster than
# torch fp32 and ONNX fp32 side by side (docs/performance.md, "Engines"): tried first,
# used when they pass the image threshold, else the fp32 export is tried.
IMAGE_INT8 = True


@dataclass(frozen=True)
class Choice:
    """``image`` / ``text``: "fp32" or "int8" through ONNX Runtime, or None for torch;
    ``notes``: one line per tower that fell back to torch (or was forced), for the log."""

    image: str | None
    text: str | None
    notes: tuple[str, ...] = ()


def choose(doc: dict[str, Any], engine: str, text_setting: str, min_text: float) -> Choice:
    """The precisions to use for an export's manifest ``doc`` under ``engine`` ("auto" or
    "onnx": "onnx" uses a tower that fails its check, with a note) and the text
    precision setting ("auto": int8 when it passes, "fp32", "int8")."""
    check: dict[str, float] = doc.get("check") or {}
    failed: dict[str, str] = doc.get("failed") or {}
    forced = engine == "onnx"
    notes: list[str] = []

    def pick(tower: str, wanted: list[str], floor: float) -> str | None:
        have = [p for p in wanted if (f"{tower}.int8" if p == "int8" else tower) in check]
        for precision in have:
            name = f"{tower}.int8" if precision == "int8" else tower
            if check[name] >= floor:
                return precision
        if tower in failed:
            notes.append(f"ONNX {tower} tower did not export ({failed[tower]}); using torch")
            return None
        if not have:
            return None
        name = f"{tower}.int8" if have[-1] == "int8" else tower
        if forced:
            notes.append(f"ONNX {name} probe cosine {check[name]:.4f} < {floor}, used as asked")
            return have[-1]
        notes.append(f"ONNX {name} probe cosine {check[name]:.4f} < {floor}; using torch fp32")
        return None

    image = pick("image", ["int8", "fp32"] if IMAGE_INT8 else ["fp32"], MIN_IMAGE_COSINE)
    text_order = {"auto": ["int8", "fp32"], "int8": ["int8"], "fp32": ["fp32"]}[text_setting]
    if text_setting == "int8" and "text.int8" in check and check["text.int8"] < min_text:
        notes.append(f"ONNX text.int8 probe cosine {check['text.int8']:.4f} < {min_text}, used as asked")
        return Choice(image, "int8", tuple(notes))
    text = pick("text", text_order, min_text)
    return Choice(image, text, tuple(notes))
