"""Synthetic vectors shaped like CLIP embeddings, for index benchmarks at 1M items.

Random Gaussian vectors are a worst case for IVF (no cluster structure, every
neighbour equally far). Real CLIP image embeddings are not like that: they sit in a
narrow cone (two random photos have cosine ~0.4-0.5), form semantic clusters of very
different sizes, and most of their variance lies in a few dozen directions. The
generator below reproduces those three traits:

* a shared mean direction (the cone), scaled so random pairs have cosine ~0.45;
* a mixture of ``clusters`` Gaussians with Zipf-distributed sizes;
* anisotropic noise: per-dimension variance decays as a power law.

Queries come in two kinds: *image-like* (fresh draws from the same mixture, as an
example image would be) and *text-like* (shifted by a constant "modality gap" and
noisier, so their nearest images are farther away, as with real text queries).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class ClipLike:
    """A seeded generator of CLIP-like unit vectors in ``dim`` dimensions."""

    def __init__(self, dim: int = 512, clusters: int = 2000, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.scales = (np.arange(1, dim + 1, dtype=np.float32) ** -0.6).astype(np.float32)
        self.scales /= np.sqrt((self.scales**2).sum())  # unit expected noise norm
        mean = rng.standard_normal(dim).astype(np.float32)
        self.mean = 0.75 * mean / np.linalg.norm(mean)
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)).astype(np.float32))
        self.basis = basis.astype(np.float32)  # rotates the decaying spectrum off the axes
        centres = self._noise(rng, clusters) * 0.8 + self.mean
        self.centres = centres.astype(np.float32)
        weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
        self.weights = weights / weights.sum()
        gap = rng.standard_normal(dim).astype(np.float32)
        self.gap = 0.6 * gap / np.linalg.norm(gap)

    def _noise(self, rng: np.random.Generator, n: int) -> Vectors:
        z = rng.standard_normal((n, self.dim), dtype=np.float32) * self.scales
        return z @ self.basis

    def images(self, n: int, seed: int = 1, chunk: int = 100_000) -> Vectors:
        """``n`` image-like unit vectors (float32, C-contiguous)."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            which = rng.choice(len(self.centres), size=m, p=self.weights)
            x = self.centres[which] + 0.55 * self._noise(rng, m)
            out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    def texts(self, n: int, seed: int = 2) -> Vectors:
        """``n`` text-like query vectors: the modality gap plus more noise."""
        rng = np.random.default_rng(seed)
        which = rng.choice(len(self.centres), size=n, p=self.weights)
        x = self.centres[which] + 0.8 * self._noise(rng, n) + self.gap
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top_k(base: Vectors, queries: Vectors, k: int, chunk: int = 200_000) -> np.ndarray:
    """Row indices of the exact top-``k`` inner products, best first (brute force)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(base), chunk):
        scores = queries @ base[start : start + chunk].T
        part = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        s = np.take_along_axis(scores, part, axis=1)
        s_all = np.concatenate([best_s, s], axis=1)
        i_all = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-s_all, axis=1)[:, :k]
        best_s = np.take_along_axis(s_all, order, axis=1)
        best_i = np.take_along_axis(i_all, order, axis=1)
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean fraction of the true top-``k`` found in the returned top-``k``."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k


def describe(gen: ClipLike, sample: Vectors) -> dict[str, float]:
    """Statistics to compare with real CLIP embeddings."""
    rng = np.random.default_rng(9)
    a = sample[rng.integers(0, len(sample), 2000)]
    b = sample[rng.integers(0, len(sample), 2000)]
    t = gen.texts(500)
    nn = exact_top_k(sample[:50_000], t, 1)[:, 0]
    return {
        "mean_pair_cosine": round(float(np.mean(np.sum(a * b, axis=1))), 3),
        "text_to_nearest_image_cosine": round(float(np.mean(np.sum(t * sample[nn], axis=1))), 3),
    }


def cached_images(n: int, dim: int = 512) -> Vectors:
    """``n`` image-like vectors of the default generator, cached as .npy (memory-mapped)."""
    from benchmarks.common import out_dir

    path = out_dir("vectors") / f"cliplike-{dim}-{n}.npy"
    if not path.is_file():
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, ClipLike(dim).images(n))
        tmp.replace(path)
    return np.load(path, mmap_mode="r")


def query_sets(n_each: int = 100, dim: int = 512) -> dict[str, Vectors]:
    """Held-out queries of both kinds from the default generator."""
    gen = ClipLike(dim)
    return {"image": gen.images(n_each, seed=7), "text": gen.texts(n_each, seed=8)}
