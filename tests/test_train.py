"""The trainer: it learns, its checkpoints reload to the same vectors, it resumes, and
its options (SigLIP loss, locked towers) do what they say. Tiny models, seconds each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipfind.api.cli import main
from clipfind.encoder import ClipEncoder
from clipfind.training.metrics import mean_recall
from clipfind.training.synthetic import ShapesDataset
from clipfind.training.trainer import TrainConfig, train

SIZE = 32  # tiny-clip-test's input size


def _data(n: int, seed: int = 0, full: bool = False) -> ShapesDataset:
    return ShapesDataset(n, seed=seed, size=SIZE, random_captions=not full)


def test_fine_tuning_lowers_val_loss_and_raises_recall(tmp_path, tiny_checkpoint):
    cfg = TrainConfig(model=f"local-dir:{tiny_checkpoint}", out=tmp_path / "ft", epochs=3,
                      batch_size=32, lr=2e-3, warmup=0.1, validate_first=True, threads=1)
    result = train(cfg, _data(320), _data(96, seed=1, full=True))
    before, after = result.history[0], result.history[-1]
    assert before.epoch == 0 and before.train_loss is None
    assert after.val_loss < before.val_loss - 0.2
    assert mean_recall(after.recall) > mean_recall(before.recall) + 0.05
    assert after.recall["text_to_image_R@10"] > before.recall["text_to_image_R@10"]
    summary = json.loads((tmp_path / "ft" / "train_summary.json").read_text())
    assert summary["best_epoch"] == result.best_epoch >= 1


def test_checkpoint_reloads_with_local_dir_and_gives_same_vectors(tmp_path):
    out = tmp_path / "one"
    train(TrainConfig(model="tiny-clip-test", out=out, epochs=1, batch_size=16, threads=1),
          _data(48), _data(16, seed=1))
    state = torch.load(out / "train_state.pt", map_location="cpu", weights_only=False)["model"]
    import open_clip

    twin = open_clip.create_model("tiny-clip-test")
    twin.load_state_dict(state)  # the in-memory weights after the (only, so best) epoch
    twin.eval()
    enc = ClipEncoder(f"local-dir:{out}", device="cpu", text_precision="fp32")  # exact weights
    image = _data(1, seed=5)[0][0]
    with torch.no_grad():
        pixels = enc.preprocess(image).unsqueeze(0)
        want_img = torch.nn.functional.normalize(twin.encode_image(pixels), dim=-1).numpy()
        tokens = open_clip.get_tokenizer("tiny-clip-test")(["a red circle"])
        want_txt = torch.nn.functional.normalize(twin.encode_text(tokens), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_images([image]), want_img, atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(["a red circle"]), want_txt, atol=1e-5)
    config = json.loads((out / "open_clip_config.json").read_text())
    assert config["preprocess_cfg"]["size"] in (SIZE, [SIZE, SIZE])


def test_resume_continues_where_it_stopped(tmp_path):
    base = dict(model="tiny-clip-test", out=tmp_path / "r", batch_size=16, threads=1)
    first = train(TrainConfig(**base, epochs=1), _data(48), _data(16, seed=1))  # type: ignore[arg-type]
    again = train(TrainConfig(**base, epochs=2, resume=True), _data(48), _data(16, seed=1))  # type: ignore[arg-type]
    assert [h.epoch for h in again.history] == [1, 2]
    assert again.history[0] == first.history[0]
    assert again.steps == 2 * first.steps


def test_siglip_loss_with_locked_image_tower(tmp_path):
    out = tmp_path / "lit"
    start = ClipEncoder("tiny-clip-test", device="cpu")
    image = _data(1, seed=9)[0][0]
    before = start.encode_images([image])
    train(TrainConfig(model="tiny-clip-test", out=out, loss="siglip", lock_image=True, epochs=1,
                      batch_size=16, lr=5e-3, threads=1), _data(48), _data(16, seed=1))
    enc = ClipEncoder(f"local-dir:{out}", device="cpu")
    assert enc.is_sigmoid and enc.logit_bias is not None
    np.testing.assert_allclose(enc.encode_images([image]), before, atol=1e-5)  # image tower locked
    moved = float(np.abs(enc.encode_texts(["a red circle"]) - start.encode_texts(["a red circle"])).max())
    assert moved > 1e-3  # the text tower learnt


def test_bad_inputs_are_clear(tmp_path):
    from clipfind.errors import ModelLoadError

    with pytest.raises(ValueError, match="loss"):
        train(TrainConfig(model="tiny-clip-test", out=tmp_path / "x", loss="hinge"), _data(8))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ModelLoadError, match="not an open_clip config"):
        train(TrainConfig(model=str(bad), out=tmp_path / "y"), _data(8))


def test_cli_train_from_config_file_then_eval(tmp_path, capsys):
    folder = tmp_path / "pairs"
    folder.mkdir()
    data = _data(40, full=True)
    lines = ["image,caption"]
    for i in range(len(data)):
        image, caption = data[i]
        image.save(folder / f"{i}.png")
        lines.append(f"{i}.png,{caption}")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    config = Path(__file__).parent / "model_configs" / "tiny-clip-test.json"
    out = tmp_path / "model"
    assert main(["train", str(folder / "pairs.csv"), "--model", str(config), "--out", str(out),
                 "--epochs", "2", "--batch-size", "8", "--val-fraction", "0.2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    assert "text_to_image_R@5" in doc["history"][0]["recall"]
    assert main(["eval", str(folder / "pairs.csv"), "--model", f"local-dir:{out}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "retrieval" and report["images"] == 40 and report["captions"] == 40


def test_image_folder_training_validates_by_zero_shot_accuracy(tmp_path):
    from clipfind.training.data import load_pairs
    from tests.fakes import solid

    for colour in ("red", "green", "blue", "yellow"):
        for i in range(12):
            solid(tmp_path / "set" / colour / f"{i}.png", colour, size=(32, 32))
    data = load_pairs(tmp_path / "set", templates=["a photo of a {}.", "{}"])
    result = train(TrainConfig(model="tiny-clip-test", out=tmp_path / "m", epochs=6, batch_size=8,
                               lr=2e-3, val_fraction=0.25, threads=1, validate_first=True), data)
    first, last = result.history[0].recall, result.history[-1].recall
    assert "zero_shot_top1" in last
    assert last["zero_shot_top1"] >= 0.9 > first["zero_shot_top1"]


def test_accumulation_early_stopping_and_augmentation(tmp_path):
    from clipfind.training.model import Augment, eval_transform, train_transform

    base = dict(model="tiny-clip-test", batch_size=8, threads=1)
    accum = train(TrainConfig(**base, out=tmp_path / "a", epochs=1, accum_steps=2),  # type: ignore[arg-type]
                  _data(32), _data(8, seed=1))
    assert accum.steps == 2  # 4 batches, one optimizer step per 2
    # lr 0: validation never improves, so patience 1 stops after the second epoch
    stopped = train(TrainConfig(**base, out=tmp_path / "s", epochs=5, lr=0.0, patience=1,  # type: ignore[arg-type]
                                augment=Augment(crop_scale=(0.7, 1.0), flip=True, colour_jitter=0.3)),
                    _data(16), _data(8, seed=1))
    assert stopped.stopped_early and [h.epoch for h in stopped.history] == [1, 2]
    assert stopped.best_epoch == 1
    pre = {"size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    image = _data(1)[0][0]
    assert torch.equal(train_transform(pre, Augment())(image), eval_transform(pre)(image))
    jittered = train_transform(pre, Augment(colour_jitter=0.5))
    torch.manual_seed(0)
    assert jittered(image).shape == (3, SIZE, SIZE)
    assert not torch.equal(jittered(image), eval_transform(pre)(image))
