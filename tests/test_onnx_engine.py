"""The ONNX Runtime engine: exported towers give open_clip's own vectors, the self-check
on load refuses an export that does not match the weights, a model that does not export
falls back to torch with one line, exports are atomic and safe to race, and a stale
export is never used.

Measured spread (tiny ViT and ResNet towers, random weights, this suite's inputs): ONNX
fp32 against open_clip fp32 gave cosines 0.999999-1.0000001 for images and texts; the
bound is 0.999, a hundred times the largest gap seen, for other CPUs' kernels. ONNX int8
text towers gave 0.998-0.9995 and are held to the text threshold (0.99)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clipfind import onnx_cache, onnx_export
from clipfind.encoder import ClipEncoder
from clipfind.modelspec import load_model
from clipfind.text_int8 import PROBE_TEXTS
from tests.fakes import save_tiny_checkpoint

TEXTS = [*PROBE_TEXTS, "", "Ünïcödé café 日本語 😀", "a very long caption " * 30]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx-models")
    return {name: save_tiny_checkpoint(name, root / name) for name in ("tiny-clip-test", "tiny-rn-test")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.mark.parametrize("name", ["tiny-clip-test", "tiny-rn-test"])
def test_onnx_towers_match_open_clip(models: dict[str, Path], cache: Path, name: str) -> None:
    """ViT and ResNet image towers and the causal text tower (cut to the query's length)
    against open_clip's own fp32 ``encode_image`` / ``encode_text`` (padded to 77)."""
    from clipfind.onnx_towers import OnnxTowers

    loaded = load_model(f"local-dir:{models[name]}", "cpu", "fp32")
    manifest, _ = onnx_export.export(loaded, cache)
    assert {"image", "text", "text.int8"} <= set(manifest.doc["towers"])
    assert manifest.doc["text_truncates"] and manifest.tokenizer_context == 77
    towers = OnnxTowers(manifest, "fp32", "fp32")
    size = manifest.doc["image_size"]
    pixels = torch.rand(5, 3, size, size, generator=torch.Generator().manual_seed(3)) * 4 - 2
    tokens = loaded.tokenizer(TEXTS)
    with torch.inference_mode():
        ref_img = loaded.model.encode_image(pixels).numpy()
        ref_txt = loaded.model.encode_text(tokens).numpy()
    assert _cos(towers.encode_pixels(pixels.numpy()), ref_img).min() >= 0.999
    assert _cos(towers.encode_tokens(tokens.numpy()), ref_txt).min() >= 0.999
    assert _cos(towers.encode_tokens(tokens.numpy(), "int8"), ref_txt).min() >= 0.99
    # a text alone gives the vector it gets among others (int8 encodes each alone)
    alone = towers.encode_tokens(tokens[3:4].numpy(), "int8")
    assert np.allclose(alone, towers.encode_tokens(tokens.numpy(), "int8")[3:4], atol=1e-5)
    assert manifest.doc["check"]["image"] >= 0.995 and manifest.doc["check"]["text"] >= 0.999


def test_auto_engine_encodes_like_torch(models: dict[str, Path], cache: Path) -> None:
    spec = f"local-dir:{models['tiny-clip-test']}"
    fast = ClipEncoder(spec, device="cpu", engine="auto", model_cache=cache, text_precision="fp32")
    slow = ClipEncoder(spec, device="cpu", engine="torch", model_cache=cache, text_precision="fp32")
    images = [Image.new("RGB", (37 + i, 50), (40 * i, 200 - 30 * i, 90)) for i in range(4)]
    # int8 images: held to the self-check's image threshold (0.9999 seen here)
    assert _cos(fast.encode_images(images), slow.encode_images(images)).min() >= 0.995
    assert _cos(fast.encode_texts(TEXTS), slow.encode_texts(TEXTS)).min() >= 0.999
    assert fast.engine_label == "images: onnx int8; texts: onnx fp32"
    assert slow.engine_label == "images: torch fp32; texts: torch fp32"
    assert (fast.logit_scale, fast.image_size) == (slow.logit_scale, slow.image_size)
    cold = ClipEncoder(spec, device="cpu", engine="auto", model_cache=cache)
    probe = cold.probe_texts([PROBE_TEXTS[0]])  # the export's recorded torch fp32 vector
    assert _cos(probe, slow.probe_texts([PROBE_TEXTS[0]]))[0] >= 0.9999
    assert cold._loaded is None and not cold._cold.towers._sessions  # no model, no session


def test_a_model_that_does_not_export_uses_torch(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The exporter raising what it raises for an operator it has no ONNX form of."""
    from torch.onnx.errors import UnsupportedOperatorError

    def refuse(*args: object, **kwargs: object) -> None:
        raise UnsupportedOperatorError("aten::made_up_op", 17, "")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    spec = f"local-dir:{models['tiny-clip-test']}"
    enc = ClipEncoder(spec, device="cpu", engine="auto", model_cache=tmp_path, text_precision="fp32")
    ref = ClipEncoder(spec, device="cpu", engine="torch", text_precision="fp32")
    with caplog.at_level(logging.WARNING, logger="clipfind"):
        assert enc.engine_label == "images: torch fp32; texts: torch fp32"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("clipfind.onnx")]
    assert len(lines) == 1 and "does not export to ONNX" in lines[0] and "made_up_op" in lines[0]
    assert "\n" not in lines[0]
    pixels = torch.rand(2, 3, 32, 32)
    assert np.array_equal(enc.encode_pixels(pixels), ref.encode_pixels(pixels))
    assert not list(tmp_path.rglob("manifest.json"))  # nothing half-made is left to find


def test_self_check_refuses_an_export_of_other_weights(
    models: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An image tower file swapped for another model's (same shapes): the check on load
    sees it and images go through torch, with one warning; the text tower still passes."""
    spec = f"local-dir:{models['tiny-clip-test']}"
    manifest, _ = onnx_export.export(load_model(spec, "cpu", "fp32"), tmp_path / "a")
    other = tmp_path / "other"
    torch.manual_seed(1)
    other_model = open_clip.create_model("tiny-clip-test")  # differs from the seed-0 one
    from clipfind.checkpoint import save_checkpoint

    save_checkpoint(other_model, open_clip.get_model_config("tiny-clip-test"), other)
    swapped, _ = onnx_export.export(load_model(f"local-dir:{other}", "cpu", "fp32"), tmp_path / "b")
    for name in ("image.onnx", "image.int8.onnx"):
        manifest.path(name).write_bytes(swapped.path(name).read_bytes())
    enc = ClipEncoder(spec, device="cpu", engine="auto", model_cache=tmp_path / "a")
    with caplog.at_level(logging.WARNING, logger="clipfind"):
        engine = enc.engine
    assert engine.image == "torch" and engine.text.startswith("onnx")
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("clipfind")
    ]
    assert len(warned) == 1 and "ONNX image probe cosine" in warned[0], warned
    forced = ClipEncoder(spec, device="cpu", engine="onnx", model_cache=tmp_path / "a")
    assert forced.engine.image == "onnx fp32"  # --engine onnx uses it anyway, with a warning


def test_two_exports_at_once_share_one(models: dict[str, Path], tmp_path: Path) -> None:
    loaded = load_model(f"local-dir:{models['tiny-rn-test']}", "cpu", "fp32")
    results: list[tuple[onnx_cache.Manifest, bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(onnx_export.export(loaded, tmp_path)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(made for _, made in results) == [False, True]
    assert results[0][0].folder == results[1][0].folder
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert onnx_cache.find_export(tmp_path, loaded.spec.spec) is not None


def test_a_rewritten_checkpoint_is_not_served_an_old_export(models: dict[str, Path], tmp_path: Path) -> None:
    folder = save_tiny_checkpoint("tiny-clip-test", tmp_path / "m")
    spec = f"local-dir:{folder}"
    onnx_export.export(load_model(spec, "cpu", "fp32"), tmp_path / "cache")
    assert onnx_cache.find_export(tmp_path / "cache", spec) is not None
    weights = folder / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes())  # new mtime: as after re-training
    assert onnx_cache.find_export(tmp_path / "cache", spec) is None
    fresh = ClipEncoder(spec, device="cpu", engine="auto", model_cache=tmp_path / "cache")
    fresh.encode_texts(["a dog"])
    assert fresh._cold is None  # no ready export: loaded torch and exported for next time
    assert onnx_cache.find_export(tmp_path / "cache", spec) is not None
