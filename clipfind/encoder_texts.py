"""The text side of :class:`clipfind.encoder.ClipEncoder`: tokens, the LRU cache of
query vectors, the probe texts a collection knows its model by, and which tower (ONNX,
the int8 torch copy, fp32) encodes them. A mixin: the encoder holds the state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from clipfind.devices import normalise_features

if TYPE_CHECKING:
    from clipfind.onnx_engine import Engine

Vectors = npt.NDArray[np.float32]


class TextSide:
    """Texts in, normalised rows out (mixed into ClipEncoder, whose attributes it uses)."""

    def _tokens(self, engine: Engine, texts: list[str]) -> Any:
        """Token ids as int64 numpy: the plain-Python BPE when the export was checked
        with it (no open_clip import), else the model's own tokenizer."""
        context = engine.towers.manifest.tokenizer_context if engine.towers else None
        if context is None:
            return np.asarray(self.loaded.tokenizer(texts), dtype=np.int64)
        if self._bpe is None:
            from clipfind.bpe import ClipBPE

            self._bpe = ClipBPE(context)
        return self._bpe(texts)

    @property
    def text_model(self) -> Any:
        """The :class:`clipfind.text_int8.TextModel` texts are encoded with (built once,
        under the lock: the API encodes from several threads)."""
        if self._text_model is None:
            loaded = self.loaded
            with self._lock:
                if self._text_model is None:
                    from clipfind.text_int8 import choose_text_model

                    device = str(self.device)
                    self._text_model = choose_text_model(
                        loaded.model, loaded.tokenizer, self.requested_text_precision,
                        device.split(":")[0], "fp16" if device.startswith("cuda") else "fp32")
        return self._text_model

    @property
    def text_precision(self) -> str:
        """What texts are encoded at: "int8", "fp32" or "fp16"."""
        engine = self._text_engine()
        if engine.towers is not None and engine.choice.text:
            return engine.choice.text
        return str(self.text_model.precision)

    # -- texts -------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> Vectors:
        """Encode texts; repeated texts come from an LRU cache (safe across threads: the
        API serves queries from several at once)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), np.float32)
        wanted = list(dict.fromkeys(texts))
        with self._cache_lock:
            found = {t: self._text_cache[t] for t in wanted if t in self._text_cache}
            for t in found:
                self._text_cache.move_to_end(t)
        missing = [t for t in wanted if t not in found]
        if missing:
            fresh = self._encode_texts_uncached(missing)
            found.update(zip(missing, fresh, strict=True))
            with self._cache_lock:
                for text, vec in zip(missing, fresh, strict=True):
                    self._text_cache[text] = vec
                    self._text_cache.move_to_end(text)
                while len(self._text_cache) > self._text_cache_size:
                    self._text_cache.popitem(last=False)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    def probe_texts(self, texts: Sequence[str]) -> Vectors:
        """Texts through the model as loaded (fp32 on a CPU), never through the int8
        copy of the text tower: what a collection recognises its model by
        (:meth:`clipfind.store.collection.Collection.bind_model`). An image-only command
        checks its model this way without building and checking an int8 tower. With an
        ONNX text tower: the torch fp32 vectors its export recorded for the probe texts
        (a one-shot query then opens one session, not two), else its fp32 export."""
        engine = self._text_engine()
        towers = engine.towers
        if towers is not None and engine.choice.text and "text" in towers.manifest.doc["towers"]:
            from clipfind.onnx_towers import normalise

            known = towers.manifest.doc.get("probe_vectors") or {}
            if all(t in known for t in texts):
                return np.asarray([known[t] for t in texts], np.float32)
            return normalise(towers.encode_tokens(self._tokens(engine, list(texts)), "fp32"))
        import torch

        from clipfind.text_tower import encode_tokens

        with torch.inference_mode():
            tokens = self.loaded.tokenizer(list(texts)).to(self.device)
            return normalise_features(encode_tokens(self.model, tokens))

    def _encode_texts_uncached(self, texts: Sequence[str]) -> Vectors:
        engine = self._text_engine()
        if engine.towers is not None and engine.choice.text:
            from clipfind.onnx_towers import normalise

            return np.concatenate([
                normalise(engine.towers.encode_tokens(
                    self._tokens(engine, list(texts[start : start + self.batch_size]))))
                for start in range(0, len(texts), self.batch_size)])
        import torch

        text_model = self.text_model
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.loaded.tokenizer(list(texts[start : start + self.batch_size]))
                feats = text_model.encode(tokens.to(self.device))
                out.append(normalise_features(feats))
        return np.concatenate(out)
