"""Zero-shot classification and labeling with the project's reference model (a tiny
CLIP trained on synthetic shapes): answers known from how the pictures were drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clipfind.config import Settings
from clipfind.imageio import load_image
from clipfind.indexer import index_paths
from clipfind.search.zeroshot.classify import classify
from clipfind.search.zeroshot.labeling import label_collection, label_rows
from clipfind.store.collection import Collection
from clipfind.training.data import Labelled
from clipfind.training.evaluate import evaluate_zero_shot
from clipfind.training.synthetic import ALL_COMBOS, HELD_OUT_COMBOS, ShapesDataset

pytestmark = pytest.mark.slow
TEMPLATES = "simple"


def _write(data: ShapesDataset, folder: Path) -> Labelled:
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for i in range(len(data)):
        path = folder / f"{i:04d}.png"
        data.image(i).save(path)
        paths.append(path)
        labels.append(data.spec(i).label)
    return Labelled(paths, labels)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():  # type: ignore[no-untyped-def]
    """Single-image encodes of a tiny model are ~15x slower with 2 intra-op threads on
    a busy 2-core machine (thread hand-offs dominate); the answers do not change."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Labelled:
    """Colour-shape pairs the model never saw in training, 10 pictures each."""
    data = ShapesDataset(len(HELD_OUT_COMBOS) * 10, seed=123, combos=HELD_OUT_COMBOS,
                         random_captions=False)
    return _write(data, tmp_path_factory.mktemp("held_out"))


def test_classify_reaches_eval_accuracy_on_held_out_shapes(reference_encoder, held_out):
    report = evaluate_zero_shot(reference_encoder, held_out, _templates())
    classes = held_out.classes
    hits = []
    for path, truth in zip(held_out.paths, held_out.labels, strict=True):
        image = load_image(path, reference_encoder.image_size).image
        hits.append(classify(reference_encoder, image, classes, TEMPLATES)[0].label == truth)
    accuracy = float(np.mean(hits))
    assert accuracy >= report.top1 - 1e-9
    assert accuracy > 3 / len(classes)  # far above chance: the model and classify both work


def test_label_agrees_with_classify_and_decodes_nothing(reference_encoder, tmp_path, monkeypatch):
    data = ShapesDataset(84, seed=7, combos=ALL_COMBOS, random_captions=False)
    truth = _write(data, tmp_path / "shapes")
    coll = Collection(Settings(data_dir=tmp_path / "data", model=reference_encoder.spec,
                               batch_size=16, workers=1))
    index_paths(coll, reference_encoder, [tmp_path / "shapes"])
    torch.set_num_threads(1)  # index_paths leaves torch on 2 threads (reported to its owners)
    classes = sorted({lb for lb in truth.labels})

    def boom(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("label decoded an image")

    import clipfind.imageio
    import clipfind.indexer.prepare

    with monkeypatch.context() as m:
        for mod in (clipfind.imageio, clipfind.indexer.prepare):
            for fn in ("decode_image", "load_image", "read_bytes"):
                if hasattr(mod, fn):
                    m.setattr(mod, fn, boom)
        m.setattr(reference_encoder, "encode_images", boom)
        summary = label_collection(coll, reference_encoder, classes, name="shapes",
                                   templates=TEMPLATES, background=())
    assert summary.scored == len(truth.paths) == summary.labelled
    stored = {Path(r.path).name: r.label for r in label_rows(coll.catalog, "shapes")}
    for path in truth.paths:
        image = load_image(path, reference_encoder.image_size).image
        assert stored[path.name] == classify(reference_encoder, image, classes, TEMPLATES)[0].label
    correct = np.mean([stored[p.name] == t for p, t in zip(truth.paths, truth.labels, strict=True)])
    assert correct > 3 / len(classes)  # far above chance


def _templates() -> list[str]:
    from clipfind.search.zeroshot.prompts import resolve_templates

    return list(resolve_templates(TEMPLATES))


def test_blank_pictures_are_none_of_these_with_a_background_set(reference_encoder):
    """The reference model learnt what an empty canvas is called ("a grey background"):
    with those words as the background set, blank pictures get no label while pictures
    of shapes keep theirs."""
    from PIL import Image

    from clipfind.search.zeroshot.classify import classify_vector
    from clipfind.training.synthetic import BACKGROUNDS

    background = [f"{name} background" for name in BACKGROUNDS]
    classes = sorted({f"{c} {s}" for c, s in ALL_COMBOS})
    blanks = reference_encoder.encode_images(
        [Image.new("RGB", (64, 64), rgb) for rgb in BACKGROUNDS.values()])
    for vec in blanks:
        assert classify_vector(reference_encoder, vec, classes, TEMPLATES,
                               background=background).none_of_these
    data = ShapesDataset(42, seed=11, combos=ALL_COMBOS, random_captions=False)
    shapes = reference_encoder.encode_images([data.image(i) for i in range(len(data))])
    kept = [not classify_vector(reference_encoder, v, classes, TEMPLATES,
                                background=background).none_of_these for v in shapes]
    assert np.mean(kept) > 0.8
