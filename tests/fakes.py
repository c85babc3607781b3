"""Models whose answers are known, for tests.

:class:`ColourEncoder` embeds an image as its mean colour and a text by the colour
words it contains, in the same 8-d space: "red" ranks red images first, always. It has
the encoder's interface, so the indexer, search and API run on it unchanged.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

COLOURS = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "yellow": (255, 255, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255),
    "white": (255, 255, 255), "black": (0, 0, 0),
}
DIM = 8


def _colour_vector(rgb: np.ndarray) -> np.ndarray:
    """Mean RGB in [0, 1] → a unit vector, linear in the colour (plus a constant
    component so grey is not the zero vector): similar colours, similar vectors."""
    vec = np.zeros(DIM, np.float32)
    vec[:3] = np.asarray(rgb, np.float32) - 0.5
    vec[3] = 0.2
    return (vec / np.linalg.norm(vec)).astype(np.float32)


class ColourEncoder:
    """A deterministic stand-in for :class:`clipfind.encoder.ClipEncoder`."""

    spec = "fake-colour"
    image_size = 32
    dim = DIM
    logit_scale = 100.0
    logit_bias = None
    is_sigmoid = False

    def __init__(self) -> None:
        self.images_encoded = 0
        self.texts_encoded = 0

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        arr = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr.reshape(-1, 3).mean(axis=0))

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        self.images_encoded += len(pixels)
        return np.stack([_colour_vector(p.numpy()) for p in pixels])

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels(torch.stack([self.preprocess(i) for i in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_encoded += len(texts)
        rows = []
        for text in texts:
            # punctuation is not part of a word: "a photo of a red." is red
            words = [COLOURS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in COLOURS]
            rgb = np.mean(words, axis=0) / 255.0 if words else np.array([0.5, 0.5, 0.5])
            rows.append(_colour_vector(rgb))
        return np.stack(rows)


def solid(path: Path, colour: str | tuple[int, int, int], size: tuple[int, int] = (40, 30),
          fmt: str | None = None, **save_args: object) -> Path:
    """Write a solid-colour image (with a little noise so files differ)."""
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    # seeded by the path's last parts (not hash(): randomised per process), so every run of a
    # test draws the same pixels
    rng = np.random.default_rng(zlib.crc32("/".join(path.parts[-3:]).encode()))
    arr = np.clip(np.array(rgb, np.int16) + rng.integers(-6, 7, (size[1], size[0], 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), "RGB").save(path, fmt, **save_args)
    return path


def save_tiny_checkpoint(name: str, folder: Path) -> Path:
    """Save a registered tiny config with seeded random weights as a local-dir folder."""
    import open_clip

    from clipfind.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = open_clip.create_model(name)
    save_checkpoint(model, open_clip.get_model_config(name), folder)
    return folder


def clean_env() -> dict[str, str]:
    """This process's environment without its ``CLIPFIND_*`` settings, as a user's shell
    has it, except the test session's model cache (exports never go to the user cache)."""
    import os

    kept = "CLIPFIND_MODEL_CACHE"
    return {k: v for k, v in os.environ.items() if not k.startswith("CLIPFIND_") or k == kept}
