"""Sessions opened from the optimised graph ONNX Runtime saved the first time
(:mod:`clipfind.onnx_sessions`): the same numbers as the source, a damaged or stale graph
replaced, and a cache that cannot be written still opening the source."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from clipfind import onnx_sessions
from clipfind.onnx_sessions import open_session, optimised_path

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _model(path: Path, seed: int = 0) -> Path:
    """A small MLP with a LayerNorm: MatMul + Add, Relu and the normalisation's pieces
    are what the optimiser fuses and folds."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(size=(16, 32)).astype(np.float32),
        "b1": rng.normal(size=(32,)).astype(np.float32),
        "w2": rng.normal(size=(32, 8)).astype(np.float32),
        "scale": rng.normal(size=(8,)).astype(np.float32),
        "bias": rng.normal(size=(8,)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["o"]),
        helper.make_node("LayerNormalization", ["o", "scale", "bias"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _run(session, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return session.run(None, {"x": x})[0]


def _plain(path: Path) -> object:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


X = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)


def test_the_second_session_loads_the_saved_graph_and_computes_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _model(tmp_path / "tower.onnx")
    want = _run(_plain(source), X)
    opened: list[str] = []
    real = ort.InferenceSession

    def spy(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    first = open_session(str(source), 1)
    saved = optimised_path(source, ort.__version__)
    assert saved.is_file() and saved.name.startswith("tower.opt-")
    assert not list(tmp_path.glob("*.part"))
    second = open_session(str(source), 1)
    assert opened == [str(source), str(saved)]
    assert np.array_equal(_run(first, X), want) and np.array_equal(_run(second, X), want)


def test_a_damaged_graph_is_made_again(tmp_path: Path) -> None:
    source = _model(tmp_path / "tower.onnx")
    want = _run(_plain(source), X)
    saved = optimised_path(source, ort.__version__)
    saved.write_bytes(b"not an onnx graph")
    session = open_session(str(source), 1)
    assert np.array_equal(_run(session, X), want)
    assert saved.stat().st_size > 100  # replaced by a real graph
    assert np.array_equal(_run(open_session(str(source), 1), X), want)


def test_a_remade_export_never_meets_the_old_graph(tmp_path: Path) -> None:
    source = _model(tmp_path / "tower.onnx", seed=0)
    open_session(str(source), 1)
    old = optimised_path(source, ort.__version__)
    _model(source, seed=1)  # the export made again: other weights, a later mtime
    later = old.stat().st_mtime_ns + 10**9
    os.utime(source, ns=(later, later))
    new = optimised_path(source, ort.__version__)
    assert new != old
    assert np.array_equal(_run(open_session(str(source), 1), X), _run(_plain(source), X))
    assert new.is_file() and not old.exists()  # the stale graph is gone


def test_a_cache_that_cannot_be_written_opens_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _model(tmp_path / "tower.onnx")
    nowhere = tmp_path / "missing-folder" / "tower.opt-x.onnx"  # ONNX Runtime cannot save there
    monkeypatch.setattr(onnx_sessions, "optimised_path", lambda *_: nowhere)
    session = open_session(str(source), 1)
    assert np.array_equal(_run(session, X), _run(_plain(source), X))
    assert not nowhere.parent.exists()


def test_the_cpu_identity_names_the_cpu() -> None:
    identity = onnx_sessions.cpu_identity()
    assert identity
    if Path("/proc/cpuinfo").is_file() and "flags" in Path("/proc/cpuinfo").read_text():
        assert "flags" in identity
