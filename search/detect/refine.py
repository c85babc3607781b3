"""Box refinement by the crop scorer: move each side of a box in or out while the
crop's cosine with the query improves (greedy coordinate ascent, halving the step).

Sliding-window maps are blurry (a cell holds the mean of every window over it), so
their regions are loose; the crop encoder, which sees exactly the box, tells a tight
box from a loose one. Used for towers without patch tokens; costs ``8 × rounds`` crop
encodings per query.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from clipfind.search.detect.proposals import Boxes, clip_boxes

Vectors = npt.NDArray[np.float32]


def variants(box: npt.ArrayLike, step: float, width: int, height: int) -> Boxes:
    """The box with one side moved in or out by ``step`` of its size, 8 ways."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).ravel())
    dx, dy = (x1 - x0) * step, (y1 - y0) * step
    out = []
    for side, delta in ((0, dx), (1, dy), (2, dx), (3, dy)):
        for sign in (-1.0, 1.0):
            b = [x0, y0, x1, y1]
            b[side] += sign * delta
            if b[2] - b[0] >= 2 and b[3] - b[1] >= 2:
                out.append(b)
    return clip_boxes(np.asarray(out, np.float32).reshape(-1, 4), width, height)


def refine(encode: Callable[[Boxes], Vectors], boxes: Boxes, vecs: Vectors, query_vecs: Vectors,
           width: int, height: int, rounds: int = 2, step: float = 0.2) -> tuple[Boxes, Vectors]:
    """For each query, refine its best-matching candidate; the refined boxes (with their
    embeddings) are appended to the candidates."""
    if len(boxes) == 0:
        return boxes, vecs
    new_boxes, new_vecs = [], []
    for q in query_vecs:
        i = int(np.argmax(vecs @ q))
        box, vec, score = boxes[i], vecs[i], float(vecs[i] @ q)
        size = step
        for _ in range(rounds):
            cand = variants(box, size, width, height)
            if len(cand) == 0:
                break
            cand_vecs = encode(cand)
            j = _pick(cand, cand_vecs @ q, box, score)
            if j is None:
                size /= 2
            else:
                box, vec, score = cand[j], cand_vecs[j], float(cand_vecs[j] @ q)
        new_boxes.append(box)
        new_vecs.append(vec)
    return (np.concatenate([boxes, np.asarray(new_boxes, np.float32)]),
            np.concatenate([vecs, np.asarray(new_vecs, np.float32)]))


def _pick(cand: Boxes, scores: Vectors, box: Boxes, score: float, tie: float = 1e-5) -> int | None:
    """The best variant if it scores better; on a tie, the largest variant larger than the
    box (a crop inside an object can score as well as one around all of it)."""
    j = int(np.argmax(scores))
    if float(scores[j]) > score + tie:
        return j
    area = np.prod(cand[:, 2:] - cand[:, :2], axis=1)
    current = float(np.prod(np.asarray(box)[2:] - np.asarray(box)[:2]))
    ok = np.nonzero((scores >= score - tie) & (area > current))[0]
    return int(ok[np.argmax(area[ok])]) if len(ok) else None
