"""The encoder interface every layer is written against.

:class:`Encoder` is what the indexer, search, zero-shot classification, detection and
the shells need from a model: images and texts in, L2-normalised float32 rows out, plus
the few facts the scoring rules read (input side, logit scale and bias). The open_clip
:class:`clipfind.encoder.ClipEncoder` implements it; so does the deterministic
``ColourEncoder`` the tests use. This module imports neither torch nor open_clip, so any
module can name the type for free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Encoder(Protocol):
    """An embedding model for one joint image-text space.

    ``spec`` names the model (recorded with a collection's vectors); ``image_size`` is
    the side of the square input; ``logit_scale``/``logit_bias`` are the model's own
    (a bias means SigLIP-style sigmoid scoring, ``is_sigmoid``). Optional extras some
    code looks for with ``getattr``: ``model`` (the torch module, for dense detection)
    and ``device`` (to plan CPU streams while indexing).
    """

    @property
    def spec(self) -> str: ...

    @property
    def image_size(self) -> int: ...

    @property
    def dim(self) -> int: ...

    @property
    def logit_scale(self) -> float: ...

    @property
    def logit_bias(self) -> float | None: ...

    @property
    def is_sigmoid(self) -> bool: ...

    @property
    def preprocess(self) -> Callable[[Image.Image], Any]:
        """PIL image → a model input tensor (what :meth:`encode_pixels` takes, stacked)."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> Vectors:
        """Decoded, oriented RGB images → one normalised row each."""
        ...

    def encode_pixels(self, pixels: Any) -> Vectors:
        """A batch of preprocessed image tensors ``(n, ...)`` → one normalised row each."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> Vectors:
        """Texts → one normalised row each, in the images' space."""
        ...


def stack(pixels: Sequence[Any]) -> Any:
    """Preprocessed images as one batch: a numpy array when they are arrays (the
    torch-free transform), else a tensor."""
    if all(isinstance(p, np.ndarray) for p in pixels):
        return np.stack(pixels)
    import torch

    return torch.stack([torch.as_tensor(p) for p in pixels])
