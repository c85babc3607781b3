"""Patch embeddings in the joint image-text space, from an open_clip ViT or ResNet.

A CLIP ViT's patch tokens after the last block are not aligned with text: the last
block's attention makes every token look like the global (class) token, and its
residual stream carries position-specific noise. The training-free fixes agree on
the last block (MaskCLIP, Zhou et al. 2022; SCLIP, Wang et al. 2023; ClearCLIP, Lan et
al. 2024). We follow ClearCLIP, the simplest and, in its ablations, the strongest:

* keep every block but the last as it is;
* in the last block, replace query-key attention with query-query attention (a token
  attends to tokens that look like itself, so a region's tokens pool within it);
* drop the last block's residual connection and feed-forward network (ClearCLIP shows
  these carry most of the noise in dense maps);
* apply ``ln_post`` and ``proj`` to every token.

``mode="maskclip"`` keeps only the value path (each token sees itself), ``"sclip"``
uses q-q plus k-k attention; both are here to compare (benchmarks/detect_bench.py).

The image is encoded at its own aspect ratio, with about ``area_factor`` times the
tokens of the model's square input, by interpolating the positional embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from clipfind.encoding import Encoder

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
MODES = ("clearclip", "sclip", "maskclip")


@dataclass(frozen=True)
class PatchGrid:
    """L2-normalised patch embeddings ``(rows, cols, dim)`` covering the whole image."""

    embeddings: npt.NDArray[np.float32]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.embeddings.shape[0]), int(self.embeddings.shape[1])

    def heat(self, text_vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Cosine similarity of every patch with every text: ``(n_texts, rows, cols)``."""
        sims = self.embeddings @ np.asarray(text_vectors, np.float32).T
        return np.moveaxis(sims, -1, 0).astype(np.float32)


def supports_dense(encoder: Encoder) -> bool:
    """True for towers whose spatial tokens can be read out in the joint space."""
    return tower_kind(encoder) is not None


def tower_kind(encoder: Encoder) -> str | None:
    """``"vit"``: an open_clip VisionTransformer with class-token or mean pooling, a
    standard last block and a linear projection; ``"resnet"``: an open_clip
    ModifiedResNet (its attention pool's value path, MaskCLIP's original recipe);
    ``None``: anything else (timm towers, attention-pooled heads), which use windows."""
    model = getattr(encoder, "model", None)
    visual = getattr(model, "visual", None)
    if visual is None:
        return None
    try:
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
    except ImportError:  # pragma: no cover
        return None
    if isinstance(visual, ModifiedResNet):
        return "resnet"
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
        return None
    last = visual.transformer.resblocks[-1]
    ok = (
        isinstance(last, ResidualAttentionBlock)
        and not hasattr(last, "ln_1_kv")
        and getattr(last.attn, "_qkv_same_embed_dim", False)
        and visual.proj is not None
        and visual.transformer.batch_first
    )
    return "vit" if ok else None


def grid_size(width: int, height: int, image_size: int, patch: int,
              area_factor: float = 2.0, min_cells: int = 64) -> tuple[int, int]:
    """Rows and columns of patches for an image: its aspect ratio kept, about
    ``area_factor`` times the tokens of the square input but at least ``min_cells``
    (a 64 px ResNet has a 2 x 2 map at its own size), never fewer than 2 a side."""
    base = max((image_size / patch) ** 2 * area_factor, min_cells)
    aspect = width / height
    cols = max(2, round(math.sqrt(base * aspect)))
    rows = max(2, round(math.sqrt(base / aspect)))
    return rows, cols


def patch_embeddings(encoder: Encoder, image: Image.Image, area_factor: float = 2.0,
                     mode: str = "clearclip") -> PatchGrid:
    """Dense embeddings of ``image`` (one forward pass), see the module docstring."""
    import torch

    if mode not in MODES:
        raise ValueError(f"unknown dense mode {mode!r}; use one of {MODES}")
    visual = encoder.model.visual
    resnet = tower_kind(encoder) == "resnet"
    patch = 32 if resnet else int(visual.patch_size[0])
    rows, cols = grid_size(image.width, image.height, encoder.image_size, patch, area_factor)
    pixels = _pixels(visual, image, cols * patch, rows * patch).to(encoder.device, encoder.dtype)
    with torch.inference_mode():
        if resnet:
            x = _resnet_tokens(visual, pixels)
        else:
            x = _embed(visual, pixels, rows, cols)
            for block in visual.transformer.resblocks[:-1]:
                x = block(x)
            x = _last_block(visual.transformer.resblocks[-1], x, mode)
            x = visual.ln_post(x[:, 1:]) @ visual.proj
        x = torch.nn.functional.normalize(x.float(), dim=-1)
    return PatchGrid(x[0].reshape(rows, cols, -1).cpu().numpy().astype(np.float32))


def _resnet_tokens(visual: Any, pixels: Any) -> Any:
    """MaskCLIP for ResNets: each cell of the last feature map (plus its interpolated
    positional embedding) through the attention pool's value and output projections,
    skipping the query-key attention that mixes all cells into one vector."""
    import torch.nn.functional as F

    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))
    _, c, h, w = x.shape
    pool = visual.attnpool
    pos = pool.positional_embedding[1:].to(x.dtype)
    side = round(math.sqrt(pos.shape[0]))
    if (side, side) != (h, w):
        grid = pos.reshape(1, side, side, c).permute(0, 3, 1, 2).float()
        pos = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        pos = pos.permute(0, 2, 3, 1).reshape(h * w, c).to(x.dtype)
    tokens = x.flatten(2).transpose(1, 2) + pos[None]
    return pool.c_proj(pool.v_proj(tokens))


def _pixels(visual: Any, image: Image.Image, width: int, height: int) -> Any:
    import torch

    cfg = getattr(visual, "preprocess_cfg", None) or {}
    mean = torch.tensor(cfg.get("mean", OPENAI_MEAN), dtype=torch.float32)
    std = torch.tensor(cfg.get("std", OPENAI_STD), dtype=torch.float32)
    resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    arr = torch.from_numpy(np.asarray(resized, np.float32) / 255.0).permute(2, 0, 1)
    return ((arr - mean[:, None, None]) / std[:, None, None])[None]


def _embed(visual: Any, pixels: Any, rows: int, cols: int) -> Any:
    """Patch + class embeddings with the positional grid resized to ``rows x cols``."""
    import torch
    import torch.nn.functional as F

    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    pos = visual.positional_embedding.to(x.dtype)
    cls_pos, grid_pos = pos[:1], pos[1:]
    side = round(math.sqrt(grid_pos.shape[0]))
    if (side, side) != (rows, cols):
        grid = grid_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        grid_pos = grid.permute(0, 2, 3, 1).reshape(rows * cols, -1).to(x.dtype)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + torch.cat([cls_pos, grid_pos])[None]
    return visual.ln_pre(x)


def _last_block(block: Any, x: Any, mode: str) -> Any:
    """The last block's attention branch alone (no residual, no feed-forward)."""
    import torch.nn.functional as F

    attn = block.attn
    heads = attn.num_heads
    y = block.ln_1(x)
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    b, n, d = q.shape

    def split(t: Any) -> Any:
        return t.reshape(b, n, heads, d // heads).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    if mode == "maskclip":
        out = v
    elif mode == "sclip":
        out = F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v)
        out = out / 2
    else:
        out = F.scaled_dot_product_attention(q, q, v)
    out = out.transpose(1, 2).reshape(b, n, d)
    return block.ls_1(attn.out_proj(out))
