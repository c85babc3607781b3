"""Zero-shot classification of one image: ``[{"label", "score"}]`` sorted by score,
the shape transformers' zero-shot pipeline returns. Scoring rules: ``search.scoring``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from clipfind.encoding import Encoder
from clipfind.errors import NotFoundError, QueryError
from clipfind.search.zeroshot.prompts import DEFAULT_BACKGROUND, prompt_vectors
from clipfind.search.zeroshot.scoring import Scorer, cosines, pick


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": self.score}


@dataclass(frozen=True)
class Classification:
    """All labels' scores (best first) and the ones the image is given; empty
    ``accepted`` means "none of these"."""

    scores: list[LabelScore]
    accepted: list[LabelScore]
    mode: str

    @property
    def none_of_these(self) -> bool:
        return not self.accepted

    def as_dict(self) -> dict[str, object]:
        return {"scores": [s.as_dict() for s in self.scores],
                "accepted": [s.as_dict() for s in self.accepted],
                "none_of_these": self.none_of_these, "mode": self.mode}


def classify(
    encoder: Encoder,
    image: Image.Image,
    labels: list[str],
    templates: str | Path | Sequence[str] | None = None,
    multi_label: bool = False,
    top: int | None = None,
) -> list[LabelScore]:
    """Score ``labels`` for one RGB image, best first; ``top`` keeps the best N."""
    vec = encoder.encode_images([image])[0]
    return classify_vector(encoder, vec, labels, templates, multi_label, top).scores


def classify_vector(
    encoder: Encoder,
    vector: npt.NDArray[np.float32],
    labels: Sequence[str],
    templates: str | Path | Sequence[str] | None = None,
    multi_label: bool = False,
    top: int | None = None,
    threshold: float | None = None,
    background: Sequence[str] | None = DEFAULT_BACKGROUND,
) -> Classification:
    """Classify an image already embedded (a stored item's vector: nothing decoded).

    ``accepted`` holds the labels ``label`` would store for this vector: among the
    ``top`` best (1 in single-label mode, all in multi-label mode when ``top`` is None),
    those that beat the background prompts and reach ``threshold``.
    """
    if top is not None and top < 1:
        raise QueryError("--top must be at least 1")
    prompts = prompt_vectors(encoder, labels, templates, background)
    scorer = Scorer.for_model(encoder, multi_label)
    c = cosines(np.asarray(vector, np.float32)[None, :], prompts, scorer)
    row = scorer.score_of(c.cos, c.background[:, None], c.norm[:, None])[0]
    order = sorted(range(len(row)), key=lambda j: (-float(row[j]), j))
    ranked = [LabelScore(prompts.labels[j], float(row[j])) for j in order]
    # exactly what `label` stores for this vector: the same pick over the same cosines
    _, cols, vals, _ = pick(c, scorer, top if top is not None else (None if multi_label else 1),
                            threshold)
    given = [LabelScore(prompts.labels[j], float(v)) for j, v in zip(cols, vals, strict=True)]
    return Classification(ranked[:top] if top is not None else ranked, given, scorer.mode.value)


def image_vector(ref: str, encoder: Encoder, catalog: Any | None = None,
                 max_pixels: int = 150_000_000) -> npt.NDArray[np.float32]:
    """The vector of an IMAGE argument: ``#N`` (or ``id:N``) is an indexed item's
    stored vector, nothing decoded; anything else is an image file."""
    from clipfind.imageio import load_image

    ref = ref.strip()
    if ref.startswith(("#", "id:")):
        digits = ref.removeprefix("#").removeprefix("id:")
        if not digits.isdigit():
            raise QueryError(f"{ref!r} is not an item id; write #N")
        if catalog is None:
            raise QueryError(f"{ref}: item ids need a collection")
        vec = catalog.vector_of(int(digits))
        if vec is None:
            raise NotFoundError(f"item {ref} is not in the collection (clipfind search lists ids)")
        return vec
    path = Path(ref).expanduser()
    if not path.is_file():
        raise NotFoundError(f"image {ref!r} not found: give an image file or an item id #N")
    decoded = load_image(path, encoder.image_size, max_pixels)
    return encoder.encode_images([decoded.image])[0]
