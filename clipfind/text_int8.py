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

import copy
import logging
import time
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
# Lowest probe cosine to fp32 an int8 tower may have: the cosine at which a collection
# takes a text vector for its own model's (store/collection.py _SAME_MODEL_COSINE), so
# an accepted int8 tower never makes a collection indexed with fp32 refuse its queries.
# How much of a top-10 that keeps: README, "Text precision".
MIN_COSINE = 0.99


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
    check = f"probe cosine to fp32 {runner.min_cosine:.4f}, built in {runner.build_s:.2f}s"
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
    from clipfind.text_tower import encode_tokens

    started = time.perf_counter()
    with warnings.catch_warnings():  # torch 2.14 deprecates quantized tensors; they work
        warnings.simplefilter("ignore", UserWarning)
        runner_model, attention_int8 = _quantised_copy(model)
    with torch.inference_mode():
        tokens = tokenizer(list(PROBE_TEXTS))
        ref = F.normalize(encode_tokens(model, tokens).float(), dim=-1)
        got = F.normalize(encode_each(runner_model, tokens).float(), dim=-1)
        min_cos = float((ref * got).sum(-1).min())
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


def _quantised_copy(model: Any) -> tuple[Any, bool]:
    """A shallow copy of ``model`` with an int8 text transformer."""
    import open_clip

    if isinstance(model, open_clip.CLIP):
        transformer, attention = _int8_transformer(model.transformer)
        return _with_child(model, "transformer", transformer), attention
    text = getattr(model, "text", None)
    if text is None:
        raise TypeError(f"no text tower found on {type(model).__name__}")
    if isinstance(text, open_clip.transformer.TextTransformer):
        transformer, attention = _int8_transformer(text.transformer)
        return _with_child(model, "text", _with_child(text, "transformer", transformer)), attention
    # Other towers (Hugging Face): every nn.Linear of a private copy.
    return _with_child(model, "text", _quantise_linears(copy.deepcopy(text))), False


def _with_child(module: Any, name: str, child: Any) -> Any:
    """A shallow copy of ``module`` with child ``name`` replaced; parameters, buffers and
    all other children are shared, and ``module`` itself is not touched."""
    clone = copy.copy(module)
    clone._modules = OrderedDict(module._modules)  # own dict: the original keeps its child
    clone._modules[name] = child
    return clone


def _quantise_linears(module: Any) -> Any:
    """Dynamic int8 (per-channel weights) for every plain ``nn.Linear`` in ``module``,
    in place; only for modules nobody else holds (quantize_dynamic tags every child)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig},
                            dtype=torch.qint8, inplace=True)


def _int8_transformer(source: Any) -> tuple[Any, bool]:
    """An int8 replacement for an open_clip ``Transformer``: standard blocks get int8
    attention projections and MLPs; blocks of other kinds a private copy with int8 MLPs."""
    blocks = []
    for block in source.resblocks:
        if is_standard_block(block):
            blocks.append(Int8Block.from_block(block))
        else:
            log.debug("text block %s: int8 MLPs only", type(block).__name__)
            blocks.append(_quantise_linears(copy.deepcopy(block)))
    attention = all(isinstance(b, Int8Block) for b in blocks)
    return Int8Transformer(blocks, source.batch_first), attention


def is_standard_block(block: Any) -> bool:
    """open_clip's ``ResidualAttentionBlock`` with a plain self-attention
    ``nn.MultiheadAttention``: the forward :class:`Int8Block` reproduces."""
    from open_clip.transformer import ResidualAttentionBlock

    attn = getattr(block, "attn", None)
    return (
        type(block) is ResidualAttentionBlock
        and type(attn) is nn.MultiheadAttention
        and attn._qkv_same_embed_dim
        and attn.bias_k is None
        and attn.bias_v is None
        and not attn.add_zero_attn
        and isinstance(block.mlp, nn.Sequential)
    )


class Int8Block(nn.Module):
    """``ResidualAttentionBlock.forward`` for self-attention with int8 q/k/v, output and
    MLP projections; layer norms, layer scales and the activation are the fp32 model's own
    modules (shared, read only)."""

    def __init__(self, block: Any, qkv: nn.Module, out: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = block.ln_1, block.ln_2
        self.ls_1, self.ls_2 = block.ls_1, block.ls_2
        # Older open_clip blocks normalise the attention output (scale_attn).
        self.ln_attn = getattr(block, "ln_attn", None) or nn.Identity()
        self.qkv, self.out, self.mlp = qkv, out, mlp
        self.heads = block.attn.num_heads
        self.batch_first = block.attn.batch_first

    @classmethod
    def from_block(cls, block: Any) -> Int8Block:
        attn = block.attn
        mlp = nn.Sequential(OrderedDict(
            (name, Int8Linear(m.weight, m.bias) if type(m) is nn.Linear else m)
            for name, m in block.mlp.named_children()
        ))
        return cls(block, Int8Linear(attn.in_proj_weight, attn.in_proj_bias),
                   Int8Linear(attn.out_proj.weight, attn.out_proj.bias), mlp)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.batch_first:
            x = x.transpose(0, 1)
        x = x + self.ls_1(self.ln_attn(self.out(self._attend(self.ln_1(x), attn_mask))))
        x = x + self.ls_2(self.mlp(self.ln_2(x)))
        return x if self.batch_first else x.transpose(0, 1)

    def _attend(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (self.qkv(x).view(batch, length, 3, self.heads, width // self.heads)
                   .permute(2, 0, 3, 1, 4).unbind(0))
        # open_clip turns any mask into an additive float mask before attention: same here.
        mask = None if attn_mask is None else attn_mask.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return y.transpose(1, 2).reshape(batch, length, width)


class Int8Transformer(nn.Module):
    """Stands in for open_clip's ``Transformer`` in the runner's copy of the model."""

    def __init__(self, blocks: list[nn.Module], batch_first: bool) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)
        self.batch_first = batch_first
        self.grad_checkpointing = False

    def get_cast_dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.batch_first:
            x = x.transpose(0, 1).contiguous()
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x if self.batch_first else x.transpose(0, 1)


class Int8Linear(nn.Module):
    """``F.linear`` with int8 weights (symmetric, one scale per output row) and each
    input quantised on the fly: what ``quantize_dynamic`` makes of an ``nn.Linear`` with
    the per-channel qconfig, built straight from the weight tensor (no observers, no
    placeholder weights: a quarter of the time for ViT-B-32's text tower)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        # numpy: its row reductions and rounding are ~10x faster than torch's here.
        w = weight.detach().float().numpy()
        scales = np.abs(w).max(axis=1).clip(1e-12) / 127.0  # symmetric: zero point 0
        qint = torch.from_numpy(np.rint(w / scales[:, None]).astype(np.int8))
        qweight = torch._make_per_channel_quantized_tensor(
            qint, torch.from_numpy(scales).double(), torch.zeros(len(scales), dtype=torch.long), 0)
        bias = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 7-bit activations, as torch does on x86: without VNNI, fbgemm's u8*s8 pair sums
        # saturate 16 bits with full-range activations.
        return torch.ops.quantized.linear_dynamic(x, self._packed, reduce_range=True)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"
