"""Retrieval metrics on embeddings, counted the way CLIP_benchmark counts them.

Text → image: a caption is a hit at k when its own image is among the k images that
score highest for it. Image → text: an image is a hit at k when any of its captions is
among the k captions that score highest for it. Ties are broken by position (stable
sort), so a hand-computed case gives exactly these numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


def recall_at_k(
    image_vecs: Matrix,
    text_vecs: Matrix,
    text_to_image: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@k both ways. ``text_to_image[j]`` is the row of caption ``j``'s image.

    Returns ``{"text_to_image_R@1": ..., "image_to_text_R@1": ..., ...}`` in [0, 1].
    """
    owner = np.asarray(text_to_image, dtype=np.int64)
    if len(owner) != len(text_vecs):
        raise ValueError("text_to_image needs one image row per caption")
    scores = np.asarray(text_vecs, np.float32) @ np.asarray(image_vecs, np.float32).T  # (texts, images)
    out: dict[str, float] = {}
    # rank of the true image for each text: images scoring strictly higher, plus ties
    # that come earlier (stable order)
    t2i_rank = _rank_of(scores, owner)
    # for each image, the best rank over its captions
    i2t_scores = scores.T  # (images, texts)
    i2t_rank = np.full(len(image_vecs), np.iinfo(np.int64).max, dtype=np.int64)
    for j, img in enumerate(owner):
        i2t_rank[img] = min(i2t_rank[img], _rank_one(i2t_scores[img], j))
    has_text = np.zeros(len(image_vecs), bool)
    has_text[owner] = True
    for k in ks:
        out[f"text_to_image_R@{k}"] = float(np.mean(t2i_rank < k)) if len(owner) else 0.0
        out[f"image_to_text_R@{k}"] = float(np.mean(i2t_rank[has_text] < k)) if has_text.any() else 0.0
    return out


def _rank_of(scores: Matrix, target: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    rows = np.arange(len(target))
    true = scores[rows, target][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    ahead = (scores > true) | ((scores == true) & (cols < target[:, None]))
    return ahead.sum(axis=1).astype(np.int64)


def _rank_one(row: Matrix, target: int) -> int:
    true = row[target]
    return int(np.sum(row > true) + np.sum(row[:target] == true))


def mean_recall(metrics: dict[str, float]) -> float:
    """One number for early stopping: the mean of every recall in ``metrics``."""
    values = [v for k, v in metrics.items() if "_R@" in k]
    return float(np.mean(values)) if values else 0.0
