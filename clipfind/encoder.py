"""One small interface over an open_clip model: images and texts in, L2-normalised
float32 rows out. The model is loaded on first use, so building an encoder is free and
a command that never encodes never pays for it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from clipfind.devices import cpu_only, fp32, normalise_features, resolve_device
from clipfind.encoder_texts import TextSide
from clipfind.encoding import stack
from clipfind.modelspec import LoadedModel, load_model
from clipfind.onnx_cache import default_model_cache

if TYPE_CHECKING:
    from clipfind.config import Settings
    from clipfind.onnx_engine import Engine

Vectors = npt.NDArray[np.float32]


class ClipEncoder(TextSide):
    """Encodes images and texts with one open_clip model.

    fp16 weights on CUDA, fp32 elsewhere; ``torch.inference_mode`` always. Text vectors
    of repeated queries are served from a small LRU cache. ``text_precision`` "auto"
    encodes texts with an int8 copy of the text tower on CPU (checked against fp32 when
    built, see :mod:`clipfind.text_int8`); "fp32" keeps the model as loaded.
    ``engine`` "auto" (what :meth:`from_settings` gives by default) runs the towers with
    ONNX Runtime on a CPU where their export passes its self-check
    (:mod:`clipfind.onnx_engine`); a text query whose export is ready in ``model_cache``
    then never imports torch or open_clip. Built directly, the encoder runs torch.
    """

    def __init__(
        self,
        spec: str,
        device: str = "auto",
        batch_size: int = 32,
        text_cache_size: int = 1024,
        text_precision: str = "auto",
        engine: str = "torch",
        model_cache: Path | None = None,
    ) -> None:
        self.spec = spec
        self.requested_device = device
        self.batch_size = batch_size
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()  # model loading
        self._cache_lock = threading.Lock()
        self._text_cache: OrderedDict[str, Vectors] = OrderedDict()
        self._text_cache_size = text_cache_size
        self.requested_text_precision = text_precision
        self._text_model: Any = None  # TextModel: built on the first text encode
        self.requested_engine = engine
        self.model_cache = model_cache or default_model_cache()
        self._engine: Engine | None = None  # decided when the model loads
        self._cold: Engine | None = None  # a ready text tower found without torch
        self._cold_looked = False
        self._array_transform: Any = None  # images too, without torch (clipfind.pixels)
        self._cold_images_looked = False
        self._bpe: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, spec: str | None = None) -> ClipEncoder:
        """The encoder ``settings`` ask for: device, batch size and text precision from
        them; the model ``spec`` given (a collection's own model, see
        :attr:`clipfind.store.collection.Collection.model_spec`), else ``settings.model``,
        else :data:`clipfind.config.DEFAULT_MODEL`. Every shell builds its encoder here."""
        from clipfind.config import DEFAULT_MODEL

        return cls(spec or settings.model or DEFAULT_MODEL, device=settings.device,
                   batch_size=settings.batch_size, text_precision=settings.text_precision,
                   engine=settings.engine, model_cache=settings.model_cache)

    # -- loading -----------------------------------------------------------------
    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    device = resolve_device(self.requested_device)
                    precision = "fp16" if device == "cuda" else "fp32"
                    self._loaded = load_model(self.spec, device, precision)
        return self._loaded

    @property
    def engine(self) -> Engine:
        """What runs each tower (loads the model; exports it on first use)."""
        if self._engine is None:
            loaded = self.loaded
            with self._lock:
                if self._engine is None:
                    from clipfind.onnx_engine import prepare

                    device = str(self.device).split(":")[0]
                    engine = self.requested_engine
                    if device == "cpu" and self.dtype != fp32():
                        engine = "torch"
                    self._engine = prepare(loaded, device, self.model_cache, engine,
                                           self.requested_text_precision)
        return self._engine

    def _text_engine(self) -> Engine:
        """The engine for texts: a ready export found without loading torch when there
        is one (a one-shot query), else :attr:`engine`."""
        if self._engine is not None:
            return self._engine
        return self._lookup_cold() or self.engine

    def _lookup_cold(self) -> Engine | None:
        """The torch-free engine of a ready export (looked up once; never loads)."""
        if not self._cold_looked:
            with self._lock:
                if not self._cold_looked and self.requested_device in ("auto", "cpu"):
                    from clipfind.onnx_engine import cold_text

                    self._cold = cold_text(self.spec, self.model_cache, self.requested_engine,
                                           self.requested_text_precision)
                self._cold_looked = True
        return self._cold

    def _image_engine(self) -> Engine:
        """The engine for images: the torch-free one when its export also encodes images
        on this CPU (an index run then imports no torch), else :attr:`engine`."""
        if self._engine is None and self._cold_transform() is not None:
            assert self._cold is not None
            return self._cold
        return self.engine

    @property
    def torch_free_images(self) -> bool:
        """Whether images are encoded without torch here (a ready, checked export)."""
        return self._cold_transform() is not None

    def ready_images(self) -> None:
        """Load or find now what encoding images needs (a worker before its first batch)."""
        self._image_engine()

    def _cold_transform(self) -> Any:
        """The torch-free eval transform when images go through the torch-free engine
        (decided once, before the model is loaded, and kept)."""
        if not self._cold_images_looked and self._loaded is None and cpu_only(self.requested_device):
            cold = self._lookup_cold()
            with self._lock:
                if not self._cold_images_looked:
                    from clipfind.onnx_engine import cold_images

                    if self._engine is None and cold_images(cold, self.requested_engine == "onnx"):
                        from clipfind.pixels import ArrayTransform

                        assert cold is not None and cold.towers is not None
                        self._array_transform = ArrayTransform(cold.towers.manifest.doc["transform"])
                    self._cold_images_looked = True
        return self._array_transform

    @property
    def export_seconds(self) -> float:
        """Seconds this encoder spent exporting its model to ONNX (0: found ready)."""
        return self._engine.export_s if self._engine is not None else 0.0

    @property
    def engine_label(self) -> str:
        """What encodes images and texts, for ``info``: "onnx fp32 / onnx int8" style."""
        image_engine, text_engine = self._image_engine(), self._text_engine()
        text = text_engine.text if text_engine.text != "torch" else f"torch {self.text_precision}"
        image = image_engine.image if image_engine.image != "torch" else f"torch {self._image_precision()}"
        return f"images: {image}; texts: {text}"

    def _image_precision(self) -> str:
        return "fp16" if str(self.device).startswith("cuda") else "fp32"

    def _fact(self, key: str) -> Any:
        """A model fact from a ready export, while the torch model is not loaded."""
        if self._loaded is None:
            engine = self._text_engine()
            if engine.towers is not None and self._loaded is None:
                return engine.towers.manifest.doc.get(key)
        return None

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def preprocess(self) -> Any:
        """The model's eval transform: PIL image → normalised tensor (or the same values
        as a numpy array, replayed without torch: :mod:`clipfind.pixels`)."""
        return self._cold_transform() or self.loaded.preprocess

    @property
    def device(self) -> Any:
        """Where the model runs; known before it is loaded, so planning work (the index
        run's CPU streams) does not load it."""
        if self._loaded is not None:
            return next(self._loaded.model.parameters()).device
        if self._cold_transform() is not None:
            return "cpu"
        import torch

        return torch.device(resolve_device(self.requested_device))

    @property
    def dtype(self) -> Any:
        return next(self.model.visual.parameters()).dtype

    @property
    def dim(self) -> int:
        return int(self.probe_texts(["a photo"]).shape[1])

    @property
    def image_size(self) -> int:
        if (known := self._fact("image_size")) is not None:
            return int(known)
        size = getattr(self.model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def logit_scale(self) -> float:
        if (known := self._fact("logit_scale")) is not None:
            return float(known)
        return float(self.model.logit_scale.exp().item())

    @property
    def logit_bias(self) -> float | None:
        if self._fact("logit_scale") is not None:  # the export knows the bias (or None)
            known = self._fact("logit_bias")
            return None if known is None else float(known)
        bias = getattr(self.model, "logit_bias", None)
        return None if bias is None else float(bias.item())

    @property
    def is_sigmoid(self) -> bool:
        """SigLIP-style models carry a logit bias and score with a sigmoid."""
        return self.logit_bias is not None

    # -- images ------------------------------------------------------------------
    def encode_images(self, images: Sequence[Image.Image]) -> Vectors:
        """Encode RGB PIL images (already decoded and oriented)."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(stack([self.preprocess(img) for img in images]))

    def encode_pixels(self, pixels: Any) -> Vectors:
        """Encode a batch of preprocessed images ``(n, 3, H, W)``: a tensor or an array."""
        out = []
        engine = self._image_engine()
        if engine.towers is not None and engine.choice.image:
            from clipfind.onnx_towers import normalise

            array = pixels if isinstance(pixels, np.ndarray) else pixels.float().numpy()
            for start in range(0, len(array), self.batch_size):
                out.append(normalise(engine.towers.encode_pixels(array[start : start + self.batch_size])))
            return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
        import torch

        if isinstance(pixels, np.ndarray):
            pixels = torch.from_numpy(pixels)
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                batch = pixels[start : start + self.batch_size].to(self.device, self.dtype)
                feats = self.model.encode_image(batch)
                out.append(normalise_features(feats))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
