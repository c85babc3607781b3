"""The int8 modules behind :mod:`clipfind.text_int8`: a shallow copy of an open_clip
model whose text transformer has int8 projections, sharing every other module and tensor
with the fp32 model (which is never changed)."""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def quantised_copy(model: Any) -> tuple[Any, bool]:
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
    def convert(block: Any) -> nn.Module:
        if is_standard_block(block):
            return Int8Block.from_block(block)
        log.debug("text block %s: int8 MLPs only", type(block).__name__)
        return _quantise_linears(copy.deepcopy(block))

    # Quantising is numpy and fbgemm packing, outside the GIL: two threads halve it.
    with ThreadPoolExecutor(2) as pool:
        blocks = list(pool.map(convert, source.resblocks))
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
        if mask is not None and mask.dim() == 3:  # MHA's (batch * heads, L, L) layout (CoCa)
            mask = mask.view(batch, self.heads, length, length)
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
    """``F.linear`` with int8 weights (symmetric, one scale per output row) and each input
    quantised on the fly to 8 bits, built straight from the weight tensor (no observers or
    placeholder weights: a quarter of ``quantize_dynamic``'s time for ViT-B-32's tower).

    Without VNNI, fbgemm sums pairs of u8*s8 products in 16 bits, which saturate when
    both use their full range. torch's default gives up the activations' 8th bit; the
    weights' is cheaper to lose (one scale per row already fits them closely), while the
    activations carry the outliers: with channels 10x larger than the rest, probe cosine
    0.995 instead of 0.984 on ViT-B-32 (tests/test_text_int8.py emulates them)."""

    WEIGHT_MAX = 63  # |w| <= 63 and u8 activations: 2 * 255 * 63 < 2**15

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        # numpy: its row reductions and rounding are ~10x faster than torch's here.
        w = weight.detach().float().numpy()
        scales = np.abs(w).max(axis=1).clip(1e-12) / self.WEIGHT_MAX  # zero point 0
        qint = torch.from_numpy(np.rint(w / scales[:, None]).astype(np.int8))
        qweight = torch._make_per_channel_quantized_tensor(
            qint, torch.from_numpy(scales).double(), torch.zeros(len(scales), dtype=torch.long), 0)
        bias = None if bias is None else bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed, reduce_range=False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"
