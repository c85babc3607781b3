"""The FAISS index: kind and parameters by size, IVF recall on clustered data, ids kept
right through updates, filters on IVF, save/load round trips (memory-mapped too)."""

from __future__ import annotations

import numpy as np
import pytest

from clipfind.store.vectors import FLAT_LIMIT, VectorIndex, choose_kind, plan_index

DIM = 64


def clustered(n: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """Unit vectors around ``clusters`` centres (CLIP-like structure, small scale)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((clusters, DIM)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact(base: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> set[int]:
    return set(ids[np.argsort(-(base @ q))[:k]].tolist())


@pytest.fixture(scope="module")
def ivf_data():  # type: ignore[no-untyped-def]
    x = clustered(6000)
    ids = np.arange(1000, 7000, dtype=np.int64)  # catalog ids, not row numbers
    return ids, x, VectorIndex.build(ids, x, DIM, kind="ivf-sq8")


def test_kind_and_parameters_follow_collection_size():
    assert choose_kind(10) == "flat"
    assert choose_kind(FLAT_LIMIT) == "flat"
    assert choose_kind(FLAT_LIMIT + 1) == "ivf-sq8"
    small, big = plan_index(100_000), plan_index(1_000_000)
    assert small.kind == big.kind == "ivf-sq8"
    assert 256 <= small.nlist < big.nlist <= 4096  # lists grow like sqrt(n)
    assert plan_index(5000, "ivf-sq8").nlist * 39 <= 5000  # enough points to train each list
    with pytest.raises(ValueError, match="unknown index kind"):
        plan_index(10, "lsh")


def test_index_is_rebuilt_when_the_collection_outgrows_it():
    ids = np.arange(10, dtype=np.int64)
    flat = VectorIndex.build(ids, clustered(10), DIM)
    assert flat.kind == "flat" and flat.fits(FLAT_LIMIT) and not flat.fits(FLAT_LIMIT * 3)
    planned = VectorIndex(flat.index, plan_index(100_000))
    assert planned.fits(150_000) and not planned.fits(250_000) and not planned.fits(30_000)


def test_ivf_recall_against_exact_on_clustered_vectors(ivf_data):
    ids, x, index = ivf_data
    assert index.kind == "ivf-sq8" and len(index) == len(ids)
    queries = clustered(40, seed=5)
    recall = np.mean([len(set(index.search(q, 10)[1].tolist()) & exact(x, ids, q, 10)) / 10
                      for q in queries])
    assert recall >= 0.9
    assert 1 <= index.plan.nprobe < index.plan.nlist  # tuned, and cheaper than a full scan


def test_ivf_updates_keep_catalog_ids(ivf_data):
    ids, x, built = ivf_data
    index = VectorIndex.build(ids, x, DIM, plan=built.plan, tune=False)
    index.remove(ids[:3000])
    fresh = clustered(1, seed=42)[0]
    index.add(np.array([ids[4000]]), fresh[None, :])  # replace one vector in place
    assert len(index) == 3000
    for row in (3500, 4500, 5999):
        assert index.search(x[row], 1)[1][0] == ids[row]
    assert index.search(fresh, 1)[1][0] == ids[4000]
    assert not set(index.search(x[10], 50)[1].tolist()) & set(ids[:3000].tolist())
    assert np.dot(index.reconstruct(int(ids[4000])), fresh) > 0.99


def test_selective_filter_on_ivf_still_fills_the_page(ivf_data):
    ids, x, index = ivf_data
    allowed = ids[::300]  # 20 items scattered over every list
    scores, found = index.search(x[0], 10, allowed)
    assert len(found) == 10 and set(found.tolist()) <= set(allowed.tolist())
    best = exact(x[::300], allowed, x[0], 10)
    assert set(found.tolist()) == best
    assert np.all(np.diff(scores) <= 1e-6)


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("kind", ["flat", "ivf-sq8"])
def test_save_load_round_trip(tmp_path, ivf_data, kind, mmap):
    ids, x, ivf = ivf_data
    index = ivf if kind == "ivf-sq8" else VectorIndex.build(ids, x, DIM, generation=7)
    index.generation = 7
    path = tmp_path / "index.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, mmap=mmap)
    assert loaded is not None and loaded.mmapped == mmap
    assert (loaded.kind, loaded.generation, len(loaded), loaded.plan) == (
        kind, 7, len(ids), index.plan)
    for q in x[:5]:
        np.testing.assert_array_equal(loaded.search(q, 10)[1], index.search(q, 10)[1])
    loaded.remove(ids[:1])  # a memory-mapped index is read into memory before a change
    assert len(loaded) == len(ids) - 1 and not loaded.mmapped
    assert VectorIndex.load(path).search(x[0], 1)[1][0] == ids[0]  # the file is untouched


def test_unreadable_index_file_is_treated_as_missing(tmp_path):
    path = tmp_path / "index.faiss"
    VectorIndex.build(np.arange(3), clustered(3), DIM).save(path)
    path.write_bytes(b"not faiss")
    assert VectorIndex.load(path) is None
    assert VectorIndex.load(tmp_path / "missing.faiss") is None


def test_faiss_work_leaves_torch_thread_count_alone():
    """FAISS and torch share OpenMP: building or searching must not change how many
    threads torch's next forward pass on this thread uses."""
    import torch

    saved = torch.get_num_threads()
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(500, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    try:
        for wanted in (1, 2):
            torch.set_num_threads(wanted)
            index = VectorIndex.build(np.arange(500, dtype=np.int64), vecs, 16)
            index.search(vecs[0], 5)
            assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(saved)
