"""The int8 text tower (clipfind/text_int8.py, text_int8_modules.py): close to fp32 on random and trained
weights, zero-shot accuracy of the reference model kept, the fp32 setting exact, the
self-check falling back, one vector per text whatever its batch, and built once."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from clipfind import text_int8, text_int8_modules
from clipfind.config import Settings
from clipfind.encoder import ClipEncoder
from clipfind.training.evaluate import class_vectors, zero_shot_scores
from clipfind.training.synthetic import ALL_COMBOS, ShapesDataset
from tests.conftest import MODEL_CONFIGS

TEXTS = ["a dog", "a photo of a golden retriever running on a sandy beach at sunset",
         "x", "wow!!!", "a red circle", "two green triangles on a grey background"]


def _fp32_and_int8(spec: str) -> tuple[ClipEncoder, ClipEncoder]:
    return (ClipEncoder(spec, device="cpu", text_precision="fp32"),
            ClipEncoder(spec, device="cpu", text_precision="int8"))


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))  # rows are unit vectors


@pytest.mark.parametrize("name", ["tiny-clip-test", "tiny-sig-test"])  # causal; bidirectional
def test_int8_is_close_to_fp32_and_leaves_the_model_alone(name):
    fp32, int8 = _fp32_and_int8(name)
    before = {k: v.clone() for k, v in int8.model.state_dict().items()}
    got, want = int8.encode_texts(TEXTS), fp32.encode_texts(TEXTS)
    assert int8.text_precision == "int8" and fp32.text_precision == "fp32"
    assert _min_cos(got, want) >= text_int8.MIN_COSINE
    assert not np.allclose(got, want, atol=1e-5)  # really another computation
    runner = int8.text_model.model
    assert any(isinstance(m, text_int8_modules.Int8Linear) for m in runner.modules())
    # the loaded model is untouched: same weights, no quantised modules, fp32 forward
    assert not any(isinstance(m, text_int8_modules.Int8Linear) for m in int8.model.modules())
    assert all(torch.equal(before[k], v) for k, v in int8.model.state_dict().items())
    tokens = int8.loaded.tokenizer(TEXTS[:2])
    with torch.inference_mode():
        assert int8.model.encode_text(tokens).dtype == torch.float32


def test_custom_text_tower_gets_int8_too(tmp_path):
    """``custom_text`` models keep their text tower under ``model.text``."""
    import json

    import open_clip

    config = json.loads((MODEL_CONFIGS / "tiny-clip-test.json").read_text())
    (tmp_path / "tiny-custom-text-test.json").write_text(json.dumps({**config, "custom_text": True}))
    open_clip.add_model_config(tmp_path / "tiny-custom-text-test.json")
    fp32, int8 = _fp32_and_int8("tiny-custom-text-test")
    assert isinstance(int8.model, open_clip.CustomTextCLIP)
    got, want = int8.encode_texts(TEXTS), fp32.encode_texts(TEXTS)
    assert int8.text_precision == "int8"
    assert _min_cos(got, want) >= text_int8.MIN_COSINE and not np.allclose(got, want, atol=1e-5)
    runner = int8.text_model.model
    assert runner.text is not int8.model.text and runner.visual is int8.model.visual
    assert any(isinstance(m, text_int8_modules.Int8Linear) for m in runner.text.modules())
    assert not any(isinstance(m, text_int8_modules.Int8Linear) for m in int8.model.modules())


def _add_outlier_channels(model, factor: float, channels=(3, 17, 40)) -> None:  # type: ignore[no-untyped-def]
    """Real CLIP text towers have a few layer-norm output channels far larger than the
    rest. Scale some up and the weights reading them down: the same fp32 function, but
    activations with outliers, as dynamic quantisation meets them in real weights."""
    cols = list(channels)
    with torch.no_grad():
        for block in model.transformer.resblocks:
            for norm, weight in ((block.ln_1, block.attn.in_proj_weight),
                                 (block.ln_2, block.mlp.c_fc.weight)):
                norm.weight[cols] *= factor
                norm.bias[cols] *= factor
                weight[:, cols] /= factor


def test_activation_outliers_keep_int8_close():
    plain = ClipEncoder("tiny-clip-test", device="cpu", text_precision="fp32").encode_texts(TEXTS)
    fp32, int8 = _fp32_and_int8("tiny-clip-test")
    for encoder in (fp32, int8):
        _add_outlier_channels(encoder.model, 7.0)  # 7-bit activations: cosine 0.984
    want = fp32.encode_texts(TEXTS)
    assert np.allclose(want, plain, atol=1e-4)  # the function did not change
    assert _min_cos(int8.encode_texts(TEXTS), want) >= text_int8.MIN_COSINE
    assert int8.text_precision == "int8"


def test_fp32_setting_is_exactly_open_clip():
    encoder = ClipEncoder("tiny-clip-test", device="cpu", text_precision="fp32")
    tokens = encoder.loaded.tokenizer(TEXTS)
    with torch.inference_mode():
        want = torch.nn.functional.normalize(encoder.model.encode_text(tokens), dim=-1).numpy()
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), want, atol=1e-5)
    assert encoder.text_model.model is encoder.model


def test_a_text_gets_one_vector_whatever_its_batch():
    encoder = ClipEncoder("tiny-clip-test", device="cpu")
    together = encoder.encode_texts(TEXTS)
    for i, text in enumerate(TEXTS):
        encoder._text_cache.clear()
        assert np.array_equal(encoder.encode_texts([text])[0], together[i])


def test_self_check_falls_back_to_fp32_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(text_int8, "MIN_COSINE", 1.01)  # no int8 tower can pass
    fp32 = ClipEncoder("tiny-clip-test", device="cpu", text_precision="fp32")
    with caplog.at_level(logging.WARNING, logger="clipfind.text_int8"):
        auto = ClipEncoder("tiny-clip-test", device="cpu")
        got = auto.encode_texts(TEXTS)
    assert auto.text_precision == "fp32" and "rejected" in auto.text_model.note
    assert np.array_equal(got, fp32.encode_texts(TEXTS))
    assert any("drifts from fp32" in r.message and "fp32" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clipfind.text_int8"):
        forced = ClipEncoder("tiny-clip-test", device="cpu", text_precision="int8")
        assert forced.text_precision == "int8"  # asked for: used, with a warning
    assert any("used as asked" in r.getMessage() for r in caplog.records)


def test_a_failed_build_falls_back_to_fp32(monkeypatch, caplog):
    def broken(model):  # type: ignore[no-untyped-def]
        raise RuntimeError("no quantized engine")

    monkeypatch.setattr(text_int8_modules, "quantised_copy", broken)
    with caplog.at_level(logging.WARNING, logger="clipfind.text_int8"):
        encoder = ClipEncoder("tiny-clip-test", device="cpu")
        assert encoder.encode_texts(["a dog"]).shape == (1, 32)
    assert encoder.text_precision == "fp32"
    assert any("no quantized engine" in r.getMessage() for r in caplog.records)


def test_built_once_under_concurrent_first_queries(monkeypatch):
    calls: list[int] = []
    real = text_int8.build_int8_runner

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(text_int8, "build_int8_runner", counting)
    encoder = ClipEncoder("tiny-clip-test", device="cpu")
    encoder.loaded  # noqa: B018 - load first: the race is on the text model
    results: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, encoder.encode_texts([TEXTS[i % 2]]))) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and len(results) == 6
    assert all(np.array_equal(results[i], results[i % 2]) for i in range(6))


def test_settings_env_and_info(monkeypatch, tmp_path):
    from clipfind.api.http import create_app

    monkeypatch.setenv("CLIPFIND_TEXT_PRECISION", "fp32")
    assert Settings().text_precision == "fp32"
    monkeypatch.setenv("CLIPFIND_TEXT_PRECISION", "int4")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.delenv("CLIPFIND_TEXT_PRECISION")
    for given, shown in ((None, "int8"), ("fp32", "fp32")):
        extra = {} if given is None else {"text_precision": given}
        settings = Settings(data_dir=tmp_path / str(given), model="tiny-clip-test",
                            allowed_hosts=["testserver"], **extra)  # TestClient's Host
        with TestClient(create_app(settings)) as client:
            info = client.get("/info").json()
        assert info["text_precision"] == shown, info


def test_reference_model_int8_keeps_zero_shot_accuracy(reference_model):
    """Trained weights, not random ones: the probe check passes and zero-shot top-1
    over all 42 colour-shape classes moves by at most one point."""
    fp32, int8 = _fp32_and_int8(f"local-dir:{reference_model}")
    data = ShapesDataset(252, seed=31, combos=ALL_COMBOS, random_captions=False)
    classes = sorted({data.spec(i).label for i in range(len(data))})
    images = fp32.encode_images([data.image(i) for i in range(len(data))])
    labels = [classes.index(data.spec(i).label) for i in range(len(data))]
    templates = ["a photo of a {}.", "a {}."]
    want = class_vectors(fp32, classes, templates)
    got = class_vectors(int8, classes, templates)
    assert int8.text_precision == "int8"
    assert int8.text_model.note.startswith("probe cosine")
    assert _min_cos(got, want) >= text_int8.MIN_COSINE
    top1_fp32 = zero_shot_scores(images, want, labels, classes)[0]
    top1_int8 = zero_shot_scores(images, got, labels, classes)[0]
    assert top1_fp32 > 3 / len(classes)  # the model works at all
    assert abs(top1_int8 - top1_fp32) <= 0.01, (top1_fp32, top1_int8)
