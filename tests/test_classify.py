"""Zero-shot classification with models whose answers are known: the colour encoder
(a red image is "red"), and tiny CLIP / SigLIP configs for the scoring rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clipfind.errors import QueryError
from clipfind.search.zeroshot.classify import LabelScore, classify, classify_vector, image_vector
from clipfind.search.zeroshot.prompts import (
    label_vectors,
    prompt_vectors,
    read_labels_file,
    resolve_templates,
)
from clipfind.search.zeroshot.scoring import Mode, Scorer, score_vectors
from tests.fakes import COLOURS

LABELS = ["red", "green", "blue", "yellow"]


def _img(colour: str | tuple[int, int, int]) -> Image.Image:
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    return Image.new("RGB", (20, 16), rgb)


@pytest.mark.parametrize("colour", LABELS)
def test_solid_colour_is_classified_as_its_colour(fake_encoder, colour):
    result = classify(fake_encoder, _img(colour), LABELS)
    assert result[0].label == colour
    assert result[0].score > 0.9
    assert [r.score for r in result] == sorted((r.score for r in result), reverse=True)
    assert sum(r.score for r in result) == pytest.approx(1.0, abs=1e-5)  # CLIP: softmax
    assert result[0].as_dict() == {"label": colour, "score": result[0].score}


def test_top_keeps_the_best(fake_encoder):
    result = classify(fake_encoder, _img("blue"), LABELS, top=2)
    assert len(result) == 2 and result[0] == LabelScore("blue", result[0].score)


def test_none_of_these_for_an_image_no_label_describes(fake_encoder):
    """A grey 'receipt' still has a softmax winner, but no label beats the background."""
    vec = fake_encoder.encode_images([_img((128, 128, 128))])[0]
    grey = classify_vector(fake_encoder, vec, ["red", "green", "blue"])
    assert grey.scores[0].score > 0.3  # the softmax picks something...
    assert grey.none_of_these  # ...but it is not given
    red = classify_vector(fake_encoder, fake_encoder.encode_images([_img("red")])[0], LABELS)
    assert [a.label for a in red.accepted] == ["red"]
    # without a background set, the softmax winner is accepted
    plain = classify_vector(fake_encoder, vec, ["red", "green", "blue"], background=())
    assert len(plain.accepted) == 1


def test_multi_label_gives_independent_probabilities(fake_encoder):
    """Yellow = red + green light: both are given; blue is not; adding a label leaves
    the other labels' scores unchanged (unlike a softmax)."""
    vec = fake_encoder.encode_images([_img("yellow")])[0]
    res = classify_vector(fake_encoder, vec, ["red", "blue", "yellow"], multi_label=True)
    assert res.mode == Mode.CALIBRATED
    by = {s.label: s.score for s in res.scores}
    assert by["yellow"] > 0.99 and by["blue"] < 0.01
    assert {a.label for a in res.accepted} == {"yellow", "red"}
    more = classify_vector(fake_encoder, vec, ["red", "blue", "yellow", "green", "cyan"],
                           multi_label=True)
    more_by = {s.label: s.score for s in more.scores}
    for label in by:
        assert more_by[label] == pytest.approx(by[label], abs=1e-6)
    # a softmax is relative: red wins against blue, and loses everything to yellow
    soft = classify_vector(fake_encoder, vec, ["red", "blue"]).scores
    soft_more = classify_vector(fake_encoder, vec, ["red", "blue", "yellow"]).scores
    assert {s.label: s.score for s in soft}["red"] > 0.99
    assert {s.label: s.score for s in soft_more}["red"] < 0.01


def test_sigmoid_and_softmax_differ_on_the_same_vectors():
    """The same cosines: CLIP-style softmax sums to 1 over the labels; SigLIP-style
    sigmoid(scale·cos + bias) is independent per label and may all be small."""
    cos = np.array([[0.30, 0.10, -0.05]], np.float32)
    bg = np.array([0.0], np.float32)
    soft = Scorer(Mode.SOFTMAX, 10.0).scores(cos, bg)
    sig = Scorer(Mode.SIGMOID, 10.0, -5.0).scores(cos, bg)
    expected_soft = np.exp(10 * cos) / np.exp(10 * cos).sum()
    expected_sig = 1 / (1 + np.exp(-(10 * cos - 5)))
    np.testing.assert_allclose(soft, expected_soft, rtol=1e-5)
    np.testing.assert_allclose(sig, expected_sig, rtol=1e-5)
    assert soft.sum() == pytest.approx(1.0)
    assert sig.max() < 0.5 < soft.max()  # "none of these" is possible with a sigmoid


@pytest.fixture
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny models on a busy 2-core machine: 2 intra-op threads cost more than they give."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_models_pick_their_scoring(fake_encoder, one_torch_thread):
    from clipfind.encoder import ClipEncoder

    sig = ClipEncoder("tiny-sig-test", device="cpu")
    clip = ClipEncoder("tiny-clip-test", device="cpu")
    assert Scorer.for_model(sig).mode == Mode.SIGMOID
    assert Scorer.for_model(sig, multi_label=True).mode == Mode.SIGMOID
    assert Scorer.for_model(clip).mode == Mode.SOFTMAX
    assert Scorer.for_model(fake_encoder, multi_label=True).mode == Mode.CALIBRATED
    image = Image.new("RGB", (50, 40), (200, 30, 30))
    labels = ["a red square", "a blue circle", "a dog"]
    for enc, sigmoid in ((sig, True), (clip, False)):
        got = {s.label: s.score for s in classify(enc, image, labels, templates="{}")}
        cos = label_vectors(enc, labels, ["{}"]) @ enc.encode_images([image])[0]
        logits = enc.logit_scale * cos
        want = (1 / (1 + np.exp(-(logits + enc.logit_bias))) if sigmoid
                else np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum())
        np.testing.assert_allclose([got[lb] for lb in labels], want, rtol=1e-4, atol=1e-6)


def test_label_vectors_are_cached_per_labels_and_templates(fake_encoder):
    first = prompt_vectors(fake_encoder, ["red", "blue"], "simple")
    encoded = fake_encoder.texts_encoded
    again = prompt_vectors(fake_encoder, ["red", "blue"], "simple")
    assert fake_encoder.texts_encoded == encoded
    np.testing.assert_array_equal(first.vectors, again.vectors)
    prompt_vectors(fake_encoder, ["red", "blue"], ["a {} thing"])
    assert fake_encoder.texts_encoded > encoded
    norms = np.linalg.norm(first.vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_templates_by_name_file_or_inline(tmp_path):
    assert len(resolve_templates("simple")) >= 2
    assert len(resolve_templates("imagenet")) == 80
    assert resolve_templates("a {} photo") == ("a {} photo",)
    f = tmp_path / "t.txt"
    f.write_text("A {}.\nthe {} again\n")
    assert resolve_templates(str(f)) == ("A {}.", "the {} again")
    with pytest.raises(QueryError):
        resolve_templates(["no placeholder"])
    with pytest.raises(QueryError):
        resolve_templates("no-such-set")


@pytest.mark.parametrize(("name", "body"), [
    ("l.txt", "# colours\nred\n\nblue\nred\n"),
    ("l.json", json.dumps(["red", "blue"])),
    ("l.yaml", "- red\n- blue\n"),
])
def test_labels_file_formats(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(body)
    assert read_labels_file(path) == ["red", "blue"]


def test_image_argument_item_id_uses_stored_vector(tmp_path, fake_encoder, fake_settings,
                                                   monkeypatch):
    from clipfind.indexer import index_paths
    from clipfind.store.collection import Collection
    from tests.fakes import solid

    solid(tmp_path / "p" / "green.png", "green")
    coll = Collection(fake_settings)
    index_paths(coll, fake_encoder, [tmp_path / "p"])
    item_id = next(iter(coll.catalog.iter_vectors()))[0][0]

    def no_decode(*_a, **_k):  # an item id must never decode its file
        raise AssertionError("decoded an image")

    monkeypatch.setattr("clipfind.imageio.load_image", no_decode)
    vec = image_vector(f"#{item_id}", fake_encoder, coll.catalog)
    res = classify_vector(fake_encoder, vec, LABELS)
    assert res.scores[0].label == "green"
    with pytest.raises(Exception, match="not in the collection"):
        image_vector("#999", fake_encoder, coll.catalog)


def test_scores_for_many_images_match_one_by_one(fake_encoder):
    imgs = [_img(c) for c in LABELS]
    prompts = prompt_vectors(fake_encoder, LABELS)
    vecs = fake_encoder.encode_images(imgs)
    batch = score_vectors(vecs, prompts, Scorer.for_model(fake_encoder))
    for i, vec in enumerate(vecs):
        one = score_vectors(vec[None], prompts, Scorer.for_model(fake_encoder))
        np.testing.assert_allclose(batch.scores[i], one.scores[0], rtol=1e-5, atol=1e-7)
    assert list(batch.scores.argmax(1)) == [0, 1, 2, 3]


