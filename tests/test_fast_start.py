"""Fast start: a model is built without random initialisation and its checkpoint is
assigned (memory-mapped), giving exactly the model open_clip's own loading gives; and
commands that need no model (a re-index with nothing new) or no int8 text tower (an
image-only search) do not build them. No timings here: benchmarks/startup.py measures."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from clipfind import encoder as encoder_module
from clipfind import text_int8
from clipfind.config import Settings
from clipfind.encoder import ClipEncoder
from clipfind.errors import ModelLoadError
from clipfind.fastload import fast_weights
from clipfind.indexer import index_paths
from clipfind.modelspec import load_model
from clipfind.search.engine import search
from clipfind.search.query import build_terms
from clipfind.store.collection import Collection
from tests.fakes import save_tiny_checkpoint, solid

WEIGHTS = "open_clip_model.safetensors"


def _inputs(size: int) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, size, size, generator=g), ["a dog", "a red car on a street", "x"]


# -- the fast-loaded model is open_clip's model ------------------------------------------
@pytest.mark.parametrize("name", ["tiny-clip-test", "tiny-rn-test", "tiny-sig-test"])
def test_fast_load_equals_open_clip_loading(tmp_path: Path, name: str) -> None:
    """ViT, ResNet (batch-norm buffers) and timm towers: same weights, same buffers,
    same vectors as ``create_model_and_transforms(name, pretrained=file)``."""
    folder = save_tiny_checkpoint(name, tmp_path / name)
    fast = load_model(f"local-dir:{folder}", "cpu", "fp32")
    ref, _, ref_pre = open_clip.create_model_and_transforms(name, pretrained=str(folder / WEIGHTS))
    ref.eval()
    assert fast.model.state_dict().keys() == ref.state_dict().keys()
    for key, value in ref.state_dict().items():
        got = fast.model.state_dict()[key]
        assert got.dtype == value.dtype and torch.equal(got, value), key
    for key, value in ref.named_buffers():  # non-persistent ones too (attention masks)
        assert torch.equal(dict(fast.model.named_buffers())[key], value), key
    size = fast.model.visual.image_size
    pixels, texts = _inputs(size[0] if isinstance(size, tuple) else size)
    tokens = fast.tokenizer(texts)
    with torch.inference_mode():
        diff_img = (fast.model.encode_image(pixels) - ref.encode_image(pixels)).abs().max()
        diff_txt = (fast.model.encode_text(tokens) - ref.encode_text(tokens)).abs().max()
    assert float(diff_img) <= 1e-6 and float(diff_txt) <= 1e-6
    image = Image.new("RGB", (50, 37), (200, 30, 90))
    assert torch.equal(fast.preprocess(image), ref_pre(image))
    # and loading mattered: another seed's random init differs from the checkpoint
    torch.manual_seed(1)
    fresh = open_clip.create_model(name, pretrained=None)
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in ref.state_dict().items())


def test_assigned_weights_take_the_models_dtype(tmp_path: Path) -> None:
    """Assigning keeps the model's own layout, as a copying load would: an fp16 model
    (what CUDA gets) from an fp32 file, and an fp32 model from an fp16 file."""
    folder = save_tiny_checkpoint("tiny-clip-test", tmp_path / "m")
    spec = f"local-dir:{folder}"
    for precision in ("fp16", "fp32"):
        fast = load_model(spec, "cpu", precision).model.state_dict()
        ref = open_clip.create_model(spec, precision=precision).state_dict()
        assert {k: (v.dtype, v.shape) for k, v in fast.items()} == {
            k: (v.dtype, v.shape) for k, v in ref.items()}
        assert all(torch.equal(fast[k], v) for k, v in ref.items())
    half = {k: v.half() for k, v in load_file(str(folder / WEIGHTS)).items()}
    save_file(half, str(folder / WEIGHTS))
    fast = load_model(spec, "cpu", "fp32").model.state_dict()
    ref = open_clip.create_model(spec).state_dict()
    assert {v.dtype for v in fast.values()} == {torch.float32}
    assert all(torch.equal(fast[k], v) for k, v in ref.items())


def test_loading_draws_no_random_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the random initialisers fill is counted: open_clip's own path fills every
    weight before copying the checkpoint over it; the fast path fills almost none."""
    folder = save_tiny_checkpoint("tiny-clip-test", tmp_path / "m")
    drawn = [0]
    for method in ("uniform_", "normal_"):
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            drawn[0] += self.numel()
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    open_clip.create_model_and_transforms("local-dir:" + str(folder))
    total = sum(p.numel() for p in open_clip.create_model("tiny-clip-test").parameters())
    assert drawn[0] > total / 2  # the counter sees open_clip's initialisation
    drawn[0] = 0
    loaded = load_model(f"local-dir:{folder}", "cpu", "fp32")
    assert drawn[0] < total / 50, (drawn[0], total)
    assert loaded.model.training is False


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc/self/maps")
def test_cpu_weights_are_the_mapped_file(tiny_checkpoint: Path) -> None:
    """fp32 weights on a CPU are the checkpoint file's mapped pages, not a copy."""
    loaded = load_model(f"local-dir:{tiny_checkpoint}", "cpu", "fp32")
    path = str((tiny_checkpoint / WEIGHTS).resolve())
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(path):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            ranges.append((lo, hi))
    params = list(loaded.model.parameters())
    mapped = [p for p in params if any(lo <= p.data_ptr() < hi for lo, hi in ranges)]
    assert ranges and len(mapped) == len(params)


def test_a_checkpoint_missing_a_weight_is_refused(tmp_path: Path) -> None:
    """No random init means a weight the file lacks would be garbage: open_clip's strict
    key check must still refuse it, as one clear error (exit 3)."""
    folder = save_tiny_checkpoint("tiny-clip-test", tmp_path / "m")
    state = dict(load_file(str(folder / WEIGHTS)))
    del state["visual.proj"]
    save_file(state, str(folder / WEIGHTS))
    with pytest.raises(ModelLoadError, match=r"visual\.proj") as info:
        load_model(f"local-dir:{folder}", "cpu", "fp32")
    assert info.value.exit_code == 3


def test_offline_pretrained_specs_fail_clearly() -> None:
    for spec in ("ViT-B-32/laion2b_s34b_b79k", "hf-hub:nobody/no-such-model"):
        with pytest.raises(ModelLoadError, match="local-dir") as info:
            load_model(spec, "cpu", "fp32")
        assert info.value.exit_code == 3


def test_other_threads_keep_their_random_init() -> None:
    """The skipped initialisation is the loading thread's only: a module built on another
    thread meanwhile is initialised as usual, and everything is restored afterwards."""
    torch.manual_seed(0)
    expected = torch.nn.MultiheadAttention(8, 2).in_proj_weight.detach().clone()
    built: list[torch.Tensor] = []

    def build() -> None:
        torch.manual_seed(0)
        built.append(torch.nn.MultiheadAttention(8, 2).in_proj_weight.detach().clone())

    originals = (torch.nn.init.normal_, torch.nn.modules.activation.xavier_uniform_,
                 torch.nn.Module.load_state_dict)
    with fast_weights():
        assert torch.nn.init.normal_ is not originals[0]
        worker = threading.Thread(target=build)
        worker.start()
        worker.join()
    assert torch.equal(built[0], expected)
    assert (torch.nn.init.normal_, torch.nn.modules.activation.xavier_uniform_,
            torch.nn.Module.load_state_dict) == originals


# -- what commands do not build ----------------------------------------------------------
def _photos(root: Path) -> list[Path]:
    return [solid(root / f"{c}.png", c) for c in ("red", "green", "blue", "yellow")]


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = encoder_module.load_model

    def counting(spec: str, device: str, precision: str):  # type: ignore[no-untyped-def]
        calls.append(spec)
        return real(spec, device, precision)

    monkeypatch.setattr(encoder_module, "load_model", counting)
    return calls


def test_reindex_with_nothing_new_loads_no_model(tmp_path: Path, tiny_checkpoint: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "photos"
    photos = _photos(root)
    settings = Settings(data_dir=tmp_path / "data", model=f"local-dir:{tiny_checkpoint}")
    loads = _count_loads(monkeypatch)
    first = index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    assert first.added == 4 and len(loads) == 1
    again = index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    assert (again.added, again.unchanged, len(loads)) == (0, 4, 1)
    photos[0].unlink()  # a removal needs no model either
    gone = index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    assert (gone.removed, gone.unchanged, len(loads)) == (1, 3, 1)
    solid(root / "new" / "white.png", "white")  # something new does
    new = index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    assert (new.added, len(loads)) == (1, 2)


def test_reindex_with_another_model_still_checks_it(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Nothing new, but another model asked for: it is loaded and refused as before."""
    from clipfind.errors import ModelMismatchError

    root = tmp_path / "photos"
    _photos(root)
    settings = Settings(data_dir=tmp_path / "data", model=f"local-dir:{tiny_checkpoint}")
    index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    other = save_tiny_checkpoint("tiny-rn-test", tmp_path / "rn")
    with pytest.raises(ModelMismatchError):
        index_paths(Collection(settings), ClipEncoder(f"local-dir:{other}"), [root])


def test_image_only_search_builds_no_text_tower(tmp_path: Path, tiny_checkpoint: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "photos"
    photos = _photos(root)
    settings = Settings(data_dir=tmp_path / "data", model=f"local-dir:{tiny_checkpoint}")
    index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    built: list[str] = []
    real = text_int8.choose_text_model

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(text_int8, "choose_text_model", counting)
    coll = Collection(settings)
    encoder = ClipEncoder(settings.model, text_precision="auto")
    page = search(coll, encoder, build_terms(images=[str(photos[2])]), k=4)
    assert page.hits[0].path == str(photos[2]) and built == []
    search(coll, encoder, build_terms("a red photo"), k=4)  # a text query does build it
    assert built == ["auto"]


def test_probe_vectors_match_the_text_path(tiny_checkpoint: Path) -> None:
    """The identity probe (fp32, no int8 tower) is the text vector open_clip gives."""
    encoder = ClipEncoder(f"local-dir:{tiny_checkpoint}", text_precision="fp32")
    texts = ["a photo of a dog on a beach", "x"]
    probe = encoder.probe_texts(texts)
    assert np.abs(probe - encoder.encode_texts(texts)).max() <= 1e-6
    assert encoder.dim == probe.shape[1] == 32


# -- what commands do not import ---------------------------------------------------------
RUN_COMMANDS = r"""
import json, sys
from clipfind.api.cli.app import main
seen = []
for args in json.loads(sys.argv[1]):
    code = main(args)
    seen.append([code, [m for m in ("torch", "open_clip") if m in sys.modules]])
print(json.dumps(seen))
"""


def test_commands_that_need_no_model_import_no_torch(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """One process runs the commands in turn, as the console script would: up to the text
    search, torch and open_clip were never imported."""
    import json
    import subprocess
    import sys

    root = tmp_path / "photos"
    _photos(root)
    data = tmp_path / "data"
    settings = Settings(data_dir=data, model=f"local-dir:{tiny_checkpoint}")
    index_paths(Collection(settings), ClipEncoder(settings.model), [root])
    where = ["--data-dir", str(data)]
    commands = [["index", str(root), *where], ["info", *where], ["search", "#1", *where],
                ["classify", str(tmp_path / "nosuch.jpg"), "--labels", "a,b", *where],
                ["search", "a red photo", *where]]
    done = subprocess.run([sys.executable, "-c", RUN_COMMANDS, json.dumps(commands)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert [code == 0 for code, _ in seen] == [True, True, True, False, True], done.stderr
    assert [mods for _, mods in seen[:4]] == [[]] * 4
    assert seen[4][1] == ["torch", "open_clip"]  # the check sees an import when there is one
