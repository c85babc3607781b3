"""Score image vectors against label vectors: the one operation behind ``classify``,
``label`` and image → text ranking.

Three ways to turn cosines into scores, picked by :meth:`Scorer.for_model`:

* ``softmax`` (CLIP): ``softmax(scale · cos)`` over the given labels; scores sum to 1.
* ``sigmoid`` (SigLIP, which carries a logit bias): ``sigmoid(scale · cos + bias)``,
  independent per label.
* ``calibrated`` (``--multi-label`` on a CLIP model): ``sigmoid(scale · (cos − cos_bg))``,
  where ``cos_bg`` is the image's best cosine with the background prompts: a two-way
  softmax between the label and "something else", independent per label, 0.5 exactly
  where the label ties with the background.

Acceptance ("none of these"): a label is *given* to an image only if its cosine beats
the background's (``cos > cos_bg``) and its score reaches the threshold, in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from search.prompts import PromptVectors

Vectors = npt.NDArray[np.float32]


class Mode(StrEnum):
    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"
    CALIBRATED = "calibrated"


@dataclass(frozen=True)
class Scorer:
    """How cosines become scores for one model."""

    mode: Mode
    scale: float
    bias: float | None = None

    @classmethod
    def for_model(cls, encoder: Any, multi_label: bool = False) -> Scorer:
        """SigLIP-style models (a logit bias) → sigmoid; CLIP → softmax, or the
        background-calibrated sigmoid when ``multi_label``."""
        scale = float(encoder.logit_scale)
        bias = encoder.logit_bias
        if getattr(encoder, "is_sigmoid", bias is not None) and bias is not None:
            return cls(Mode.SIGMOID, scale, float(bias))
        return cls(Mode.CALIBRATED if multi_label else Mode.SOFTMAX, scale, None)

    def scores(self, cos: Vectors, bg: Vectors) -> Vectors:
        """``(n, m)`` scores from ``(n, m)`` cosines and ``(n,)`` background cosines."""
        import torch

        logits = torch.from_numpy(np.ascontiguousarray(cos)) * self.scale
        if self.mode is Mode.SOFTMAX:
            out = torch.softmax(logits, dim=1)
        elif self.mode is Mode.SIGMOID:
            out = torch.sigmoid(logits + float(self.bias or 0.0))
        else:
            bg_t = torch.from_numpy(np.ascontiguousarray(bg)).unsqueeze(1) * self.scale
            out = torch.sigmoid(logits - bg_t)
        return out.numpy()


@dataclass(frozen=True)
class Scored:
    """Scores of ``n`` images against ``m`` labels and which labels each image gets."""

    cos: Vectors  # (n, m)
    background: Vectors  # (n,) best cosine with a background prompt; -inf without one
    scores: Vectors  # (n, m)
    accepted: npt.NDArray[np.bool_]  # (n, m)


def score_vectors(
    image_vecs: Vectors, prompts: PromptVectors, scorer: Scorer, threshold: float | None = None
) -> Scored:
    """Score ``(n, d)`` L2-normalised image vectors against the prompts."""
    image_vecs = np.asarray(image_vecs, dtype=np.float32).reshape(-1, prompts.vectors.shape[1])
    both = np.concatenate([prompts.vectors, prompts.background_vectors])
    cos_all = image_vecs @ both.T
    m = len(prompts.labels)
    cos = np.ascontiguousarray(cos_all[:, :m])
    no_bg = np.full(len(image_vecs), -np.inf, np.float32)
    bg = cos_all[:, m:].max(axis=1) if cos_all.shape[1] > m else no_bg
    scores = scorer.scores(cos, bg)
    accepted = cos > bg[:, None]
    if threshold is not None:
        accepted &= scores >= threshold
    return Scored(cos, bg, scores, accepted)


def pick(scored: Scored, top: int | None) -> tuple[npt.NDArray[np.int64], ...]:
    """The labels given: ``(rows, cols, scores, ranks)`` for accepted labels among each
    row's ``top`` best (all accepted ones when ``top`` is None), best first per row;
    ``rank`` counts from 0 among the labels given to that row."""
    n, m = scored.scores.shape
    if top is not None and top < m:
        import torch

        _, idx_t = torch.topk(torch.from_numpy(scored.scores), k=max(top, 0), dim=1)
        idx = idx_t.numpy()
        rows = np.repeat(np.arange(n), idx.shape[1]).reshape(idx.shape)
        keep = scored.accepted[rows, idx]
        rows, cols = rows[keep], idx[keep]
    else:
        rows, cols = np.nonzero(scored.accepted)
    vals = scored.scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))  # by row, then score desc, ties by label order
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, rows, side="left")
    ranks = np.arange(len(rows)) - starts
    return rows.astype(np.int64), cols.astype(np.int64), vals, ranks.astype(np.int64)


def rank_rows(query: Vectors, matrix: Vectors, k: int) -> tuple[Vectors, npt.NDArray[np.int64]]:
    """Exact top-``k`` ``(scores, indices)`` of ``matrix`` rows by cosine with ``query``,
    best first, ties by index (image → text search)."""
    if len(matrix) == 0 or k <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    cos = np.asarray(matrix, np.float32) @ np.asarray(query, np.float32).reshape(-1)
    k = min(k, len(cos))
    part = np.argpartition(-cos, k - 1)[:k] if k < len(cos) else np.arange(len(cos))
    order = part[np.lexsort((part, -cos[part]))]
    return cos[order], order.astype(np.int64)
