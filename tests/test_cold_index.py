"""An index run on a ready ONNX export imports no torch: the model's eval transform is
replayed with Pillow and numpy (clipfind.pixels), bit for bit, and the image tower is
checked on load against the torch vectors the export recorded. A tower that no longer
runs is never used, not even with ``--engine onnx``.

Measured spread (tiny ViT, random weights, the solid-colour photos below): the same
batch through the torch-free transform and through torch's gave identical vectors. The
int8 image tower scales activations by its whole batch's range, so a stored vector also
depends slightly on the images batched with it: against the same images batched another
way, cosines 0.99993-0.99994; against torch fp32, 0.99991-0.99993. Bounds: 0.999999 for the
same batch, 0.999 across batches, 0.99 against fp32 (the int8 tower's own threshold is
0.995 on the probe pictures; these photos are not the probes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from open_clip.transform import image_transform
from PIL import Image
from torchvision import transforms as T

import clipfind
from clipfind.encoder import ClipEncoder
from clipfind.engine_policy import DOES_NOT_RUN, MIN_TEXT_COSINE, choose
from clipfind.pixels import ArrayTransform, describe, replayable
from tests.fakes import save_tiny_checkpoint, solid

COLOURS = ["red", "green", "blue", "yellow", "white", "black"]
SIZES = [(224, 224), (97, 301), (301, 97), (640, 480), (4000, 3000), (7, 5), (225, 224), (1, 300)]


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for w, h in SIZES]


@pytest.mark.parametrize(
    "transform",
    [
        image_transform(224, is_train=False),
        image_transform(256, is_train=False, resize_mode="squash", mean=(0.5,) * 3, std=(0.5,) * 3),
        image_transform(160, is_train=False, interpolation="bilinear"),
        # no resize: the crop pads a smaller picture with black first
        T.Compose(
            [
                T.CenterCrop(300),
                image_transform(8, False).transforms[2],
                T.ToTensor(),
                T.Normalize((0.1, 0.2, 0.3), (0.5, 0.4, 0.3)),
            ]
        ),
    ],
    ids=["shortest-bicubic", "squash", "bilinear", "crop-pads"],
)
def test_the_replayed_transform_is_torchvisions_bit_for_bit(transform: T.Compose) -> None:
    doc = describe(transform)
    assert doc is not None and replayable(transform) == doc
    replay = ArrayTransform(doc)
    for picture in _pictures():
        want = transform(picture).numpy()
        got = replay(picture)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want), picture.size


def test_transforms_it_cannot_replay_are_refused() -> None:
    """Those fall back to torch's transform (and the index run loads torch)."""
    assert describe(image_transform((224, 256), is_train=False)) is None  # ResizeKeepRatio
    assert describe(image_transform(224, is_train=False, resize_mode="longest")) is None
    assert describe(T.Compose([T.Resize(224), T.ToTensor()])) is None  # no RGB step, no Normalize
    assert describe(lambda image: image) is None


def test_a_tower_that_does_not_run_is_never_chosen() -> None:
    doc = {
        "check": {
            "image": DOES_NOT_RUN,
            "image.int8": DOES_NOT_RUN,
            "text": 0.9999,
            "text.int8": DOES_NOT_RUN,
        }
    }
    for engine in ("auto", "onnx"):
        choice = choose(doc, engine, "auto", MIN_TEXT_COSINE)
        assert choice.image is None and choice.text == "fp32"
        assert any("does not run" in note for note in choice.notes)
    forced = choose(doc, "onnx", "int8", MIN_TEXT_COSINE)  # asked for int8 text: not this one
    assert forced.text is None


@pytest.fixture(scope="module")
def ready(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A collection indexed in this process with the ONNX engine, which exported."""
    root = tmp_path_factory.mktemp("cold-index")
    spec = f"local-dir:{save_tiny_checkpoint('tiny-clip-test', root / 'model')}"
    for i, colour in enumerate(COLOURS[:3]):
        solid(root / "photos" / f"{i}-{colour}.png", colour, size=(40 + i, 32))
    with clipfind.open(
        "c", model=spec, data_dir=root / "data", engine="auto", model_cache=root / "cache"
    ) as cf:
        assert cf.index([root / "photos"]).added == 3
    return {"root": root, "spec": Path(spec.removeprefix("local-dir:"))}


def _index(
    ready: dict[str, Path], cache: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    root = ready["root"]
    env = {
        **os.environ,
        "CLIPFIND_DATA_DIR": str(root / "data"),
        "CLIPFIND_MODEL_CACHE": str(cache),
        "CLIPFIND_COLLECTION": "c",
        "CLIPFIND_ENGINE": "auto",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "clipfind",
            "index",
            str(root / "photos"),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "json" in imported  # importtime's output was read
    return proc, imported


def _stored(root: Path, names: list[str]) -> np.ndarray:
    with clipfind.open("c", data_dir=root / "data", engine="torch") as cf:
        by_name = {Path(h.path).name: h.id for h in cf.search("a photo", k=100).hits}
        return np.stack([cf.collection.catalog.vector_of(by_name[n]) for n in names])


def test_an_index_run_on_a_ready_export_imports_no_torch(ready: dict[str, Path]) -> None:
    root = ready["root"]
    names = [f"{i}-{c}.png" for i, c in enumerate(COLOURS) if i >= 3]
    for name in names:
        solid(root / "photos" / name, name.split("-")[1].removesuffix(".png"), size=(48, 36))
    proc, imported = _index(ready, root / "cache")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["added"] == 3
    assert not imported & {"torch", "open_clip", "torchvision"}
    assert "onnxruntime" in imported
    got = _stored(root, names)

    spec = f"local-dir:{ready['spec']}"
    pictures = [Image.open(root / "photos" / n).convert("RGB") for n in names]
    cold = ClipEncoder(spec, device="cpu", engine="auto", model_cache=root / "cache")
    assert isinstance(cold.preprocess, ArrayTransform)
    replayed = cold.encode_images(pictures)
    assert cold._loaded is None
    loaded = ClipEncoder(spec, device="cpu", engine="auto", model_cache=root / "cache")
    assert loaded.engine.image == "onnx int8"  # loaded: torch's own transform feeds it
    assert not isinstance(loaded.preprocess, ArrayTransform)
    same_tower = loaded.encode_images(pictures)
    assert (replayed * same_tower).sum(1).min() >= 0.999999  # the same batch: the same vectors
    assert (got * same_tower).sum(1).min() >= 0.999  # other batch neighbours (see above)
    fp32 = ClipEncoder(spec, device="cpu", engine="torch").encode_images(pictures)
    assert (got * fp32).sum(1).min() >= 0.99


def test_a_broken_tower_is_never_used_even_when_forced(ready: dict[str, Path], tmp_path: Path) -> None:
    """Image towers damaged after their export: the torch-free check sees they do not
    run, the check on load agrees, and ``--engine onnx`` encodes with torch, saying why
    in one line, instead of failing on every batch."""
    root = ready["root"]
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    # the export's own files; the optimised graphs saved beside them by earlier sessions
    # stay, and must not be used for the damaged files (their key names the source's mtime)
    damaged = [p for p in cache.rglob("image*.onnx") if ".opt-" not in p.name]
    assert len(damaged) == 2
    for path in damaged:
        path.write_bytes(b"not an onnx graph")
    solid(root / "photos" / "9-grey.png", (128, 128, 128), size=(44, 30))
    proc, imported = _index(ready, cache, "--engine", "onnx")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["added"] == 1
    assert "torch" in imported
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:") and line.strip()]
    assert any("does not run" in line for line in said), said
    assert not any("Traceback" in line for line in said), said
    with clipfind.open("c", data_dir=root / "data", engine="torch") as cf:
        assert cf.info().as_dict()["engine"].startswith("images: torch")
