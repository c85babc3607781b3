"""Running exported towers with ONNX Runtime on a CPU: numpy in, unnormalised float32
features out. Imports neither torch nor open_clip, so a text query can run on these
alone (:mod:`clipfind.onnx_cache` finds the export).

Sessions are created on first use. Text towers exported with a variable length take the
tokens cut to the longest real token (the padding after it never changes a causal
tower's result, ``clipfind.text_tower``); int8 text towers encode each text alone, since
ONNX Runtime's dynamic quantisation scales activations by the whole input's range, which
would make a text's vector depend on the texts beside it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from clipfind.onnx_cache import Manifest
from clipfind.onnx_sessions import open_session

Vectors = npt.NDArray[np.float32]


def available() -> bool:
    """Whether ONNX Runtime is installed (``pip install 'clipfind[onnx]'``)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


class OnnxTowers:
    """The towers of one export at the precisions chosen (``image_precision``,
    ``text_precision``: "fp32" or "int8"; None where that tower is not used)."""

    def __init__(self, manifest: Manifest, image_precision: str | None, text_precision: str | None) -> None:
        self.manifest = manifest
        self.image_precision = image_precision
        self.text_precision = text_precision
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def session(self, name: str) -> Any:
        """``name``: "image", "text", "image.int8" or "text.int8"."""
        found = self._sessions.get(name)
        if found is None:
            with self._lock:
                found = self._sessions.get(name)
                if found is None:
                    path = str(self.manifest.path(f"{name}.onnx"))
                    try:
                        found = self._sessions[name] = open_session(path, _threads(name))
                    except Exception as exc:  # a file damaged since its check
                        raise _failure(name, exc) from exc
        return found

    @property
    def truncates(self) -> bool:
        return bool(self.manifest.doc.get("text_truncates"))

    def encode_pixels(self, pixels: npt.NDArray[np.float32], precision: str | None = None) -> Vectors:
        """``(n, 3, H, W)`` preprocessed pixels → unnormalised image features."""
        precision = precision or self.image_precision or "fp32"
        name = "image" if precision == "fp32" else "image.int8"
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        return np.asarray(_run(self.session(name), name, {"pixels": pixels}), np.float32)

    def encode_tokens(self, tokens: npt.NDArray[np.int64], precision: str | None = None) -> Vectors:
        """``(n, context)`` token ids → unnormalised text features."""
        precision = precision or self.text_precision or "fp32"
        name = "text" if precision == "fp32" else "text.int8"
        session = self.session(name)
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if self.truncates:
            tokens = tokens[:, : longest(tokens)]
        if precision == "fp32" or len(tokens) == 1:
            return np.asarray(_run(session, name, {"tokens": tokens}), np.float32)
        rows = []
        for row in tokens:  # alone: see the module docstring
            one = row[None, : longest(row[None])] if self.truncates else row[None]
            rows.append(_run(session, name, {"tokens": one}))
        return np.concatenate(rows).astype(np.float32, copy=False)


def _run(session: Any, name: str, feeds: dict[str, Any]) -> Any:
    try:
        return session.run(None, feeds)[0]
    except Exception as exc:
        raise _failure(name, exc) from exc


def _failure(name: str, exc: Exception) -> Exception:
    """One line for a tower ONNX Runtime cannot load or run (after it passed its check:
    a damaged file, too little memory), with the way around it."""
    from clipfind.errors import ModelLoadError

    text = " ".join(str(exc).split())[:200]
    return ModelLoadError(f"ONNX Runtime cannot run the {name} tower ({type(exc).__name__}: {text}); "
                          "run with --engine torch (or CLIPFIND_ENGINE=torch)")


def _threads(name: str) -> int:
    """Images: half the cores per session, as the index run encodes on two streams at
    once (clipfind.indexer.encode); texts: one, since a short query is a chain of small
    products that a thread team slows down (clipfind.text_tower)."""
    import os

    cores = os.cpu_count() or 1
    return max(1, cores // 2) if name.startswith("image") else 1


def longest(tokens: npt.NDArray[np.int64]) -> int:
    """One past the last non-padding position of any row (at least 1)."""
    nonzero = np.nonzero(tokens.any(axis=0))[0]
    return int(nonzero[-1]) + 1 if len(nonzero) else 1


def normalise(feats: npt.NDArray[np.float32]) -> Vectors:
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return (feats / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
