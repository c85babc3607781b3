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
# The probe cosine the self-check records for a tower whose session does not load or run
# (clipfind.onnx_export.self_check): such a tower is never used, not even by --engine onnx.
DOES_NOT_RUN = -1.0


@dataclass(frozen=True)
class Choice:
    """``image`` / ``text``: "fp32" or "int8" through ONNX Runtime, or None for torch;
    ``notes``: one line per tower that fell back to torch (or was forced), for the log."""

    image: str | None
    text: str | None
    notes: tuple[str, ...] = ()


def choose(doc: dict[str, Any], engine: str, text_setting: str, min_text: float) -> Choice:
    """The precisions to use for an export's manifest ``doc`` under ``engine`` ("auto" or
    "onnx": "onnx" uses a tower that fails its check, with a note, but never one that
    does not run) and the text
    precision setting ("auto": int8 when it passes, "fp32", "int8")."""
    check: dict[str, float] = doc.get("check") or {}
    failed: dict[str, str] = doc.get("failed") or {}
    forced = engine == "onnx"
    notes: list[str] = []

    def name(tower: str, precision: str) -> str:
        return f"{tower}.int8" if precision == "int8" else tower

    def pick(tower: str, wanted: list[str], floor: float) -> str | None:
        have = [p for p in wanted if name(tower, p) in check]
        broken = [p for p in have if check[name(tower, p)] <= DOES_NOT_RUN]
        have = [p for p in have if p not in broken]  # never chosen, not even when forced
        for precision in have:
            if check[name(tower, precision)] >= floor:
                return precision
        if tower in failed:
            notes.append(f"ONNX {tower} tower did not export ({failed[tower]}); using torch")
            return None
        if broken and not have:
            notes.append(f"ONNX {name(tower, broken[0])} does not run in ONNX Runtime; using torch")
            return None
        if not have:
            return None
        last = name(tower, have[-1])
        if forced:
            notes.append(f"ONNX {last} probe cosine {check[last]:.4f} < {floor}, used as asked")
            return have[-1]
        notes.append(f"ONNX {last} probe cosine {check[last]:.4f} < {floor}; using torch fp32")
        return None

    image = pick("image", ["int8", "fp32"] if IMAGE_INT8 else ["fp32"], MIN_IMAGE_COSINE)
    text_order = {"auto": ["int8", "fp32"], "int8": ["int8"], "fp32": ["fp32"]}[text_setting]
    int8 = check.get("text.int8")
    if text_setting == "int8" and int8 is not None and DOES_NOT_RUN < int8 < min_text:
        notes.append(f"ONNX text.int8 probe cosine {int8:.4f} < {min_text}, used as asked")
        return Choice(image, "int8", tuple(notes))
    text = pick("text", text_order, min_text)
    return Choice(image, text, tuple(notes))
