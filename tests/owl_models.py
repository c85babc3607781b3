"""Tiny randomly initialised OWL-ViT and OWLv2 detectors, saved with ``save_pretrained``.

How the processor is built offline: the CLIP tokenizer's vocabulary cannot be downloaded
here, but open_clip ships the very same byte-level BPE (``bpe_simple_vocab_16e6.txt.gz``
in its package folder). :func:`write_clip_vocab` rebuilds Hugging Face's ``vocab.json``
(256 byte symbols, the same with ``</w>``, one entry per merge, then
``<|startoftext|>``/``<|endoftext|>``: 49,408 ids in open_clip's order, which is
OpenAI's) and ``merges.txt`` from it; ``CLIPTokenizer`` then loads from those files and
the image processors need no files at all. Weights are seeded, so every run builds the
same models.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

VOCAB_SIZE = 49408
# Small towers: a 96 px input (36 boxes) keeps a forward pass at a few milliseconds.
TOWERS = {
    "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "vocab_size": VOCAB_SIZE, "max_position_embeddings": 16},
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "image_size": 96, "patch_size": 16},
    "projection_dim": 32,
}


def write_clip_vocab(folder: Path) -> tuple[Path, Path]:
    """``vocab.json`` and ``merges.txt`` for ``CLIPTokenizer``, from open_clip's BPE file."""
    import open_clip.tokenizer as oct

    with gzip.open(oct.default_bpe()) as raw:
        lines = raw.read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(oct.bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), "utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", "utf-8")
    return vocab_file, merges_file


def tiny_processor(kind: str, images: object, folder: Path) -> object:
    """An OWL processor for ``kind`` around the ``images`` processor, with the CLIP
    tokenizer built offline in ``folder`` (:func:`write_clip_vocab`)."""
    from transformers import CLIPTokenizer, Owlv2Processor, OwlViTProcessor

    vocab_file, merges_file = write_clip_vocab(folder / "vocab")
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=16,
                              pad_token="!")  # OWL's checkpoints pad with "!" (id 0)
    cls = Owlv2Processor if kind == "owlv2" else OwlViTProcessor
    return cls(image_processor=images, tokenizer=tokenizer)


def save_tiny_owl(kind: str, folder: Path, seed: int = 0) -> Path:
    """A tiny random ``kind`` ("owlvit" or "owlv2") model plus its processor in ``folder``."""
    import torch
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
    )

    torch.manual_seed(seed)
    side = TOWERS["vision_config"]["image_size"]
    if kind == "owlv2":
        model = Owlv2ForObjectDetection(Owlv2Config(**TOWERS))
        images = Owlv2ImageProcessor(size={"height": side, "width": side})
    elif kind == "owlvit":
        model = OwlViTForObjectDetection(OwlViTConfig(**TOWERS))
        images = OwlViTImageProcessor(size={"height": side, "width": side},
                                      crop_size={"height": side, "width": side})
    else:
        raise ValueError(kind)
    processor = tiny_processor(kind, images, folder)
    _tame_heads(model, seed)
    model.eval()
    out = folder / kind
    model.save_pretrained(out)
    processor.save_pretrained(out)  # type: ignore[attr-defined]
    return out


def _tame_heads(model: object, seed: int) -> None:
    """Random heads give saturated outputs (boxes of width 0 or 1, scores of 0 or 1), which
    would make the fidelity checks trivial: small seeded weights keep the boxes near the
    model's patch-grid prior with some spread, and the scores spread over (0.2, 0.7)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    heads = [(model.box_head.dense2, 0.01), (model.class_head.logit_scale, 0.05),
             (model.class_head.logit_shift, 0.05)]
    with torch.no_grad():
        for layer, std in heads:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * std)
            layer.bias.zero_()
