"""An int8 copy of a text tower for CPU queries.

A short text query on a CPU is memory-bound: each of the few token rows streams every
weight of the text tower once (151 MB in fp32 for ViT-B-32). Dynamic int8 quantisation
(int8 weights, each activation quantised on the fly) streams a quarter of that. The
runner built here is a *separate* model object that shares everything except the
transformer with the fp32 model, so open_clip's own fp32 path stays untouched and usable
(its ``encode_text`` calls ``get_cast_dtype()``, which breaks on quantised modules).

Real CLIP text towers have activation outliers, which dynamic per-tensor activation
quantisation can turn into visible errors: :func:`build_int8_runner` compares int8 with
fp32 on a fixed probe set of varied texts *on the actual model* and reports the lowest
cosine, so the caller can refuse a runner that drifts too far.
"""

from __future__ import annotations

import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from clipfind.engine_policy import MIN_TEXT_COSINE

log = logging.getLogger(__name__)

# Varied in length, vocabulary, numbers, punctuation and case, like real queries and
# classify prompts; 16 short ones, so the check costs a fraction of a second on ViT-B-32. The
# first is the text a collection recognises its model by (clipfind/store/collection.py).
PROBE_TEXTS = (
    "a photo of a dog on a beach", "dog", "a photo of a cat", "sunset over the sea",
    "a red car parked on a street", "two people hiking in the snowy mountains",
    "birthday cake with candles", "New York City at night", "an old church, black and white",
    "3 kids playing football", "a close-up of a bee", "TEXT",
    "a photo of a keyboard.", "a blurry photo of a bird", "a pink star",
    "a green circle on a white background",
)
PRECISIONS = ("auto", "fp32", "int8")
# Lowest probe cosine to fp32 an int8 tower may have (defined beside the ONNX engine's
# thresholds, which a torch-free query reads too): clipfind/engine_policy.py.
MIN_COSINE = MIN_TEXT_COSINE


@dataclass(frozen=True)
class TextModel:
    """What texts are encoded with: ``model`` (the fp32/fp16 model itself, or a copy with
    an int8 text transformer), ``precision`` ("fp32", "fp16" or "int8") and ``note``
    (why, one line, for ``info`` and logs)."""

    model: Any
    precision: str
    note: str

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unnormalised text features of a token batch."""
        from clipfind.text_tower import encode_tokens

        if self.precision == "int8":
            return encode_each(self.model, tokens)
        return encode_tokens(self.model, tokens)


def choose_text_model(model: Any, tokenizer: Any, setting: str, device: str,
                      base: str) -> TextModel:
    """The text model for ``setting`` ("auto": int8 on CPU, else the model as loaded;
    "int8": int8 on CPU even if the self-check fails, with a warning; "fp32": the model as
    loaded, ``base`` precision). Any failure to build int8 falls back with a log line."""
    if setting not in PRECISIONS:
        raise ValueError(f"text precision {setting!r}: use one of {', '.join(PRECISIONS)}")
    if setting == "fp32":
        return TextModel(model, base, "text_precision=fp32")
    if device != "cpu":
        if setting == "int8":
            log.warning("int8 text encoding runs on CPU only; %s stays at %s", device, base)
        return TextModel(model, base, f"{base} on {device}")
    try:
        runner = build_int8_runner(model, tokenizer)
    except Exception as exc:  # an engine or tower torch cannot quantise: still answer
        log.warning("int8 text encoder unavailable (%s: %s); using %s", type(exc).__name__,
                    exc, base)
        return TextModel(model, base, f"int8 failed: {type(exc).__name__}")
    check = (f"probe cosine to fp32 {runner.min_cosine:.4f}, built in {runner.build_s:.2f}s"
             + ("" if runner.attention_int8 else ", some blocks int8 in their MLPs only"))
    if runner.min_cosine >= MIN_COSINE:
        log.info("text encoder: int8 (%s)", check)
        return TextModel(runner.model, "int8", check)
    if setting == "int8":
        log.warning("int8 text encoder drifts from fp32 (%s < %s), used as asked", check,
                    MIN_COSINE)
        return TextModel(runner.model, "int8", check)
    log.warning("int8 text encoder drifts from fp32 (%s < %s); using %s (set "
                "CLIPFIND_TEXT_PRECISION=int8 to force it)", check, MIN_COSINE, base)
    return TextModel(model, base, f"int8 rejected: {check}")


@dataclass(frozen=True)
class Int8Runner:
    """``model``: a shallow copy of the open_clip model whose text transformer is int8
    (call ``clipfind.text_tower.encode_tokens`` with it); ``min_cosine``: the lowest
    cosine to fp32 over :data:`PROBE_TEXTS`; ``attention_int8``: attention projections
    are int8 too (else MLPs only); ``build_s``: seconds to build and check."""

    model: Any
    min_cosine: float
    attention_int8: bool
    build_s: float


def build_int8_runner(model: Any, tokenizer: Any) -> Int8Runner:
    """Quantise ``model``'s text tower to int8 (CPU only) and check it against fp32.

    Raises whatever quantisation raises (missing engine, unknown tower): the caller falls
    back to fp32. Never modifies ``model``."""
    from clipfind.text_int8_modules import quantised_copy
    from clipfind.text_tower import encode_tokens

    started = time.perf_counter()
    with warnings.catch_warnings():  # torch 2.14 deprecates quantized tensors; they work
        warnings.simplefilter("ignore", UserWarning)
        runner_model, attention_int8 = quantised_copy(model)
    tokens = tokenizer(list(PROBE_TEXTS))

    def features(encode: Any, net: Any) -> torch.Tensor:
        with torch.inference_mode():  # thread-local
            return F.normalize(encode(net, tokens).float(), dim=-1)

    saved = torch.get_num_threads()
    # fp32 and int8 side by side, one thread each: a thread team is several times slower
    # when the other core is busy, two streams are not.
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(2) as pool:
            ref = pool.submit(features, encode_tokens, model)
            got = pool.submit(features, encode_each, runner_model)
            min_cos = float((ref.result() * got.result()).sum(-1).min())
    finally:
        torch.set_num_threads(saved)
    return Int8Runner(runner_model, min_cos, attention_int8, time.perf_counter() - started)


def encode_each(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Each text on its own: dynamic quantisation scales activations by the largest
    value in the whole input, so in a batch a text's vector would depend on its company
    (cosine 0.998 alone vs in 64 on ViT-B-32) and on the padding to the longest text.
    Alone, a text always gets the same vector. Many texts (prompt sets) run on one
    single-threaded stream per torch thread: a few token rows per product leave a
    thread team idle at every operator's barrier."""
    from clipfind.text_tower import SMALL_BATCH, encode_tokens

    def one(i: int) -> torch.Tensor:
        with torch.inference_mode():  # thread-local: pool threads need their own
            return encode_tokens(model, tokens[i : i + 1])

    streams = min(torch.get_num_threads(), len(tokens))
    if len(tokens) <= SMALL_BATCH or streams <= 1:
        return torch.cat([one(i) for i in range(len(tokens))])
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # process-wide: every stream runs on its own thread
    try:
        with ThreadPoolExecutor(streams) as pool:
            return torch.cat(list(pool.map(one, range(len(tokens)))))
    finally:
        torch.set_num_threads(saved)
