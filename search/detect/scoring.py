"""Scores of detection boxes on the classification scale, and the texts they compete with.

CLIP scores are a softmax, so a lone query needs competitors or it would always score
1. Each query competes with the other queries and with one "something else" slot: the
best of

* background prompts ("a plain grey background", ...): the box shows nothing in
  particular;
* the query's **partial queries**, the query with one content word left out ("a red
  car" → "a car", "a red"): the box shows what the rest of the query says but not
  that word. A crop counts as "a red car" only where the whole query describes it
  better than any part of it, which is what rejects a blue car for "a red car" (CLIP
  ranks "a car" above "a red car" on a blue car) without a vocabulary of every other
  thing a box might hold. Single-word queries have no parts.

Only the best competitor counts, so adding prompts never dilutes a score. SigLIP scores
each query alone with the model's own sigmoid and logit bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder

# Words that do not name anything in the picture: leaving one out is not a competitor.
FUNCTION_WORDS = frozenset((
    "a", "an", "the", "of", "on", "in", "at", "with", "and", "or", "to", "from", "by", "for",
    "is", "are", "this", "that", "these", "those", "some", "its", "his", "her", "their"))
STOPWORDS = FUNCTION_WORDS | {"photo", "picture", "image"}


@dataclass(frozen=True)
class QueryTexts:
    """Every text a detection encodes: the labels first, then the shared background
    prompts, then each label's partial queries; ``competitors[j]`` are the rows (into
    the whole list) that compete with label ``j`` in its "something else" slot."""

    texts: tuple[str, ...]
    n_labels: int
    competitors: tuple[tuple[int, ...], ...]


def query_texts(labels: list[str], background: tuple[str, ...], partial: bool) -> QueryTexts:
    """The texts to encode for ``labels``, with ``partial`` queries or without."""
    texts = [*labels, *background]
    shared = tuple(range(len(labels), len(texts)))
    row: dict[str, int] = {}
    for i, text in enumerate(texts):
        row.setdefault(text.lower(), i)
    label_keys = {label.lower() for label in labels}
    competitors = []
    for label in labels:
        own = []
        for part in partial_queries(label) if partial else []:
            key = part.lower()
            if key in label_keys:  # already competes, as that label
                continue
            if key not in row:
                row[key] = len(texts)
                texts.append(part)
            own.append(row[key])
        competitors.append(shared + tuple(own))
    return QueryTexts(tuple(texts), len(labels), tuple(competitors))


def partial_queries(query: str) -> list[str]:
    """``query`` with one content word left out, for each content word; none when it
    has fewer than two ("a dog"). Articles are fixed up ("an orange cat" → "a cat")."""
    words = query.split()
    content = [i for i, w in enumerate(words) if _bare(w) not in STOPWORDS and _bare(w)]
    if len(content) < 2:
        return []
    out = []
    for drop in content:
        kept = [w for i, w in enumerate(words) if i != drop]
        out.append(" ".join(_fix_articles(kept)))
    return list(dict.fromkeys(out))


def class_scores(encoder: Encoder, image_vecs: npt.NDArray[np.float32],
                 text_vecs: npt.NDArray[np.float32], qt: QueryTexts) -> npt.NDArray[np.float32]:
    """``(n_images, n_labels)`` scores. SigLIP: sigmoid of scale · cos + bias. CLIP: per
    label, a softmax over all labels plus that label's best competitor."""
    n = qt.n_labels
    cos = image_vecs @ text_vecs.T
    scale = float(encoder.logit_scale)
    if getattr(encoder, "is_sigmoid", False):
        logits = scale * cos[:, :n] + float(encoder.logit_bias)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    labels = scale * cos[:, :n]
    out = np.zeros_like(labels)
    for j, rows in enumerate(qt.competitors):
        logits = labels
        if rows:
            other = scale * cos[:, list(rows)].max(axis=1, keepdims=True)
            logits = np.concatenate([labels, other], 1)
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        out[:, j] = probs[:, j] / probs.sum(axis=1)
    return out.astype(np.float32)


def _bare(word: str) -> str:
    return word.strip(".,;:!?\"'()").lower()


def _fix_articles(words: list[str]) -> list[str]:
    """'a'/'an' agreeing with the word after it; an article left before a stopword or
    at the end ("a photo of a on a beach") is dropped."""
    out = [w for i, w in enumerate(words) if not (
        _bare(w) in ("a", "an", "the")
        and (i + 1 == len(words) or _bare(words[i + 1]) in FUNCTION_WORDS))]
    for i in range(len(out) - 1):
        if _bare(out[i]) in ("a", "an"):
            article = "an" if _bare(out[i + 1])[:1] in tuple("aeiou") else "a"
            out[i] = article.capitalize() if out[i][:1].isupper() else article
    return out
