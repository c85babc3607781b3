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

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder
from clipfind.search.zeroshot.prompts import PromptVectors

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
    def for_model(cls, encoder: Encoder, multi_label: bool = False) -> Scorer:
        """SigLIP-style models (a logit bias) → sigmoid; CLIP → softmax, or the
        background-calibrated sigmoid when ``multi_label``."""
        scale = float(encoder.logit_scale)
        bias = encoder.logit_bias
        if getattr(encoder, "is_sigmoid", bias is not None) and bias is not None:
            return cls(Mode.SIGMOID, scale, float(bias))
        return cls(Mode.CALIBRATED if multi_label else Mode.SOFTMAX, scale, None)

    def row_norm(self, cos: Vectors) -> Vectors:
        """Per-row normaliser: ``logsumexp(scale · cos)`` for a softmax, else zeros."""
        if self.mode is not Mode.SOFTMAX or cos.shape[1] == 0:
            return np.zeros(len(cos), np.float32)
        # in place, in numpy: several times faster than torch's temporaries here
        peak = cos.max(axis=1, keepdims=True)
        work = cos - peak
        work *= self.scale
        np.exp(work, out=work)
        return (np.log(work.sum(axis=1)) + self.scale * peak[:, 0]).astype(np.float32)

    def score_of(self, cos: Vectors, bg: Vectors, norm: Vectors) -> Vectors:
        """Scores, elementwise, of cosines with their rows' background cosine and
        normaliser (broadcast). Monotonic in ``cos`` within a row, in every mode."""
        if self.mode is Mode.SOFTMAX:
            return np.exp(self.scale * cos - norm).astype(np.float32)
        z = self.scale * (cos - bg) if self.mode is Mode.CALIBRATED else self.scale * cos + (self.bias or 0.0)
        return np.exp(-np.logaddexp(0.0, -z)).astype(np.float32)  # sigmoid, no overflow

    def scores(self, cos: Vectors, bg: Vectors) -> Vectors:
        """``(n, m)`` scores from ``(n, m)`` cosines and ``(n,)`` background cosines."""
        cos = np.ascontiguousarray(cos, dtype=np.float32)
        return self.score_of(cos, np.asarray(bg)[:, None], self.row_norm(cos)[:, None])


@dataclass(frozen=True)
class Cosines:
    """Cosines of ``n`` images with ``m`` labels, each row's best background cosine
    (-inf without background prompts) and the row's score normaliser."""

    cos: Vectors  # (n, m)
    background: Vectors  # (n,)
    norm: Vectors  # (n,)


def cosines(image_vecs: Vectors, prompts: PromptVectors, scorer: Scorer) -> Cosines:
    """The one matrix product behind classify and label."""
    image_vecs = np.asarray(image_vecs, dtype=np.float32).reshape(-1, prompts.vectors.shape[1])
    cos = image_vecs @ prompts.vectors.T
    if len(prompts.background_vectors):
        bg = (image_vecs @ prompts.background_vectors.T).max(axis=1)
    else:
        bg = np.full(len(image_vecs), -np.inf, np.float32)
    return Cosines(cos, bg.astype(np.float32), scorer.row_norm(cos))


@dataclass(frozen=True)
class Scored:
    """Every label's score for ``n`` images, and which labels beat the background and
    reach the threshold."""

    scores: Vectors  # (n, m)
    accepted: npt.NDArray[np.bool_]  # (n, m)


def score_vectors(
    image_vecs: Vectors, prompts: PromptVectors, scorer: Scorer, threshold: float | None = None
) -> Scored:
    """Full ``(n, m)`` scores of L2-normalised image vectors (for showing them)."""
    c = cosines(image_vecs, prompts, scorer)
    scores = scorer.score_of(c.cos, c.background[:, None], c.norm[:, None])
    accepted = c.cos > c.background[:, None]
    if threshold is not None:
        accepted &= scores >= threshold
    return Scored(scores, accepted)


def pick(c: Cosines, scorer: Scorer, top: int | None, threshold: float | None = None
         ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], Vectors, npt.NDArray[np.int64]]:
    """The labels given: ``(rows, cols, scores, ranks)``, best first per row: among each
    row's ``top`` best labels (every label when ``top`` is None) those whose cosine
    beats the background and whose score reaches ``threshold``; ``rank`` counts from 0
    among the labels given to that row. Scores are computed for candidates only."""
    n, m = c.cos.shape
    if top == 1 and m > 1:
        rows, cols = np.arange(n), c.cos.argmax(axis=1)
    elif top is not None and top < m:
        import torch

        idx = torch.topk(torch.from_numpy(c.cos), k=max(top, 0), dim=1).indices.numpy()
        rows = np.repeat(np.arange(n), idx.shape[1])
        cols = idx.reshape(-1)
    else:
        rows, cols = np.nonzero(c.cos > c.background[:, None])
    sel = c.cos[rows, cols]
    keep = sel > c.background[rows]
    vals = scorer.score_of(sel, c.background[rows], c.norm[rows])
    if threshold is not None:
        keep &= vals >= threshold
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))  # by row, then score desc, ties by label order
    rows, cols, vals = rows[order], cols[order], vals[order]
    ranks = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
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
