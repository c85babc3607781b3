"""The encoder against open_clip itself: stored image vectors equal
``model.encode_image(preprocess(image))`` with draft decoding on, the cut-down text path
equals ``model.encode_text``, and the text cache is an LRU that threads can share."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image, ImageOps

from clipfind.config import Settings
from clipfind.encoder import ClipEncoder
from clipfind.imageio import decode_image
from clipfind.indexer import index_paths
from clipfind.store.collection import Collection
from clipfind.text_tower import can_truncate, encode_tokens

TEXTS = [
    "a dog",
    "wow!!!",  # '!' is token 0, the padding id, inside the text
    "a photo of a golden retriever running on a sandy beach at sunset, with waves",
    "x",
    " ".join(["a very long caption that goes on and on"] * 12),  # cut at 77 tokens
]


def _cos(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _mosaic(photos: list[Path], cols: int = 6, rows: int = 5) -> bytes:
    """A ~12 MP camera-sized JPEG made of real photos at full detail (3840x2400)."""
    canvas = Image.new("RGB", (640 * cols, 480 * rows))
    for i in range(cols * rows):
        with Image.open(photos[i % len(photos)]) as im:
            canvas.paste(im.convert("RGB").resize((640, 480)), ((i % cols) * 640, (i // cols) * 480))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return buf.getvalue()


# -- images ------------------------------------------------------------------------------
def test_stored_vectors_equal_open_clip_on_real_photos(tmp_path, tiny_checkpoint, coco_mini):
    photos = sorted((coco_mini / "val2017").glob("*.jpg"))[:10]
    root = tmp_path / "p"
    root.mkdir()
    for p in photos:
        (root / p.name).symlink_to(p)
    (root / "big.jpg").write_bytes(_mosaic(photos))
    settings = Settings(data_dir=tmp_path / "data", model=f"local-dir:{tiny_checkpoint}")
    encoder = ClipEncoder(settings.model, batch_size=4)
    coll = Collection(settings)
    index_paths(coll, encoder, [root])
    model, pre = encoder.model, encoder.preprocess
    assert encoder.image_size == 32
    cosines = {}
    for state in coll.catalog.states_under([root]).values():
        with Image.open(state.path) as im, torch.inference_mode():
            ref = model.encode_image(pre(im.convert("RGB"))[None])[0]
        cosines[Path(state.path).name] = _cos(ref, coll.catalog.vector_of(state.id))
    assert len(cosines) == 11
    assert min(cosines.values()) >= 0.999, cosines
    # and drafting was really on: every photo here decodes smaller than its file
    for p in [*photos, root / "big.jpg"]:
        assert decode_image(p.read_bytes(), 32).image.size[0] < Image.open(p).size[0]


def test_draft_decoding_matches_full_decoding_on_a_vit_b_32(coco_mini):
    """224 px, the size that matters; random weights are enough to compare two inputs."""
    photos = sorted((coco_mini / "val2017").glob("*.jpg"))[:30]
    data = _mosaic(photos)
    torch.manual_seed(0)
    model, _, pre = open_clip.create_model_and_transforms("ViT-B-32")
    model.eval()
    drafted = decode_image(data, target_size=224).image
    assert drafted.size == (960, 600)  # 1/4 of 3840x2400 (1/8 would leave 300 < 1.5 * 224)
    tall = _mosaic(photos, rows=6)
    drafted8 = decode_image(tall, target_size=224).image
    assert drafted8.size == (480, 360)  # 1/8 of 3840x2880
    with Image.open(io.BytesIO(data)) as full, Image.open(io.BytesIO(tall)) as full8:
        inputs = [full.convert("RGB"), drafted, ImageOps.mirror(drafted), full8.convert("RGB"),
                  drafted8]
    with torch.inference_mode():
        ref, ours, mirrored, ref8, ours8 = model.encode_image(
            torch.stack([pre(i) for i in inputs]))
    assert _cos(ref, ours) >= 0.9999
    assert _cos(ref8, ours8) >= 0.9999
    assert _cos(ref, mirrored) < 0.999  # the threshold tells different pictures apart


# -- texts -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test")
    return model.eval(), open_clip.get_tokenizer("tiny-clip-test")


def test_cut_text_path_equals_encode_text_for_causal_towers(tiny_clip, monkeypatch):
    model, tokenizer = tiny_clip
    assert can_truncate(model)
    tokens = tokenizer(TEXTS)
    assert int((tokens[-1] != 0).sum()) == tokens.shape[1]  # one text fills the context
    with torch.inference_mode():
        full = model.encode_text(tokens)
        cut = encode_tokens(model, tokens)
        short = encode_tokens(model, tokenizer(TEXTS[:2]))
    assert torch.allclose(cut, full, atol=1e-5, rtol=1e-4)
    assert torch.allclose(short, full[:2], atol=1e-5, rtol=1e-4)
    # the short batch really ran on a cut sequence
    seen: list[int] = []
    real = model.transformer.forward
    monkeypatch.setattr(model.transformer, "forward",
                        lambda x, **kw: seen.append(x.shape[1]) or real(x, **kw))
    with torch.inference_mode():
        encode_tokens(model, tokenizer(TEXTS[:2]))
    assert seen and seen[0] < 10


def test_non_causal_towers_take_open_clips_path():
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-sig-test").eval()
    assert not can_truncate(model)
    tokens = open_clip.get_tokenizer("tiny-sig-test")(TEXTS)
    with torch.inference_mode():
        assert torch.equal(encode_tokens(model, tokens), model.encode_text(tokens))


def test_encoder_texts_equal_open_clip_and_repeats_hit_the_cache(tiny_checkpoint, monkeypatch):
    encoder = ClipEncoder(f"local-dir:{tiny_checkpoint}", text_cache_size=3, text_precision="fp32")
    tokens = encoder.loaded.tokenizer(TEXTS)
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(encoder.model.encode_text(tokens), dim=-1).numpy()
    assert np.allclose(encoder.encode_texts(TEXTS), ref, atol=1e-5)
    calls: list[list[str]] = []
    real = encoder._encode_texts_uncached
    monkeypatch.setattr(encoder, "_encode_texts_uncached",
                        lambda texts: calls.append(list(texts)) or real(texts))
    out = encoder.encode_texts([TEXTS[4], TEXTS[3], TEXTS[4]])  # the 3 newest are cached
    assert calls == [] and np.allclose(out, ref[[4, 3, 4]], atol=1e-5)
    encoder.encode_texts([TEXTS[2]])  # a hit refreshes it: TEXTS[2] is now the newest
    encoder.encode_texts(["new text"])  # evicts the least recently used: TEXTS[4]
    encoder.encode_texts([TEXTS[2], TEXTS[3]])
    assert calls == [["new text"]]
    encoder.encode_texts([TEXTS[4]])
    assert calls == [["new text"], [TEXTS[4]]]


def test_text_cache_is_safe_across_threads(tiny_checkpoint):
    encoder = ClipEncoder(f"local-dir:{tiny_checkpoint}", text_cache_size=4)
    words = [f"a photo of thing number {i}" for i in range(12)]
    ref = {w: v for w, v in zip(words, encoder.encode_texts(words), strict=True)}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(30):
                batch = list(rng.choice(words, size=3))
                out = encoder.encode_texts(batch)
                for w, v in zip(batch, out, strict=True):
                    assert np.allclose(v, ref[w], atol=1e-5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(encoder._text_cache) <= 4


@pytest.mark.parametrize("name", ["tiny-rn-test", "tiny-sig-test"])  # ViT: tests above
def test_any_open_clip_family_through_a_local_checkpoint(tmp_path, name):
    """A ResNet CLIP and a SigLIP-style model (timm tower, sigmoid, bias, no causal mask)."""
    from tests.fakes import save_tiny_checkpoint

    folder = save_tiny_checkpoint(name, tmp_path / name)
    encoder = ClipEncoder(f"local-dir:{folder}", batch_size=2, text_precision="fp32")
    images = [Image.effect_noise((97, 61), 60 + 20 * i).convert("RGB") for i in range(3)]
    got_images = encoder.encode_images(images)
    got_texts = encoder.encode_texts(TEXTS[:3])
    model, pre, tok = encoder.model, encoder.preprocess, encoder.loaded.tokenizer
    with torch.inference_mode():
        ref_images = model.encode_image(torch.stack([pre(i) for i in images]), normalize=True)
        ref_texts = model.encode_text(tok(TEXTS[:3]), normalize=True)
    assert got_images.dtype == np.float32 and got_images.shape == ref_images.shape
    assert np.allclose(got_images, ref_images.numpy(), atol=1e-5)
    assert np.allclose(got_texts, ref_texts.numpy(), atol=1e-5)
    assert np.allclose(np.linalg.norm(got_images, axis=1), 1, atol=1e-5)
    assert encoder.is_sigmoid == (name == "tiny-sig-test")
