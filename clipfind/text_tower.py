"""Fast text encoding for causal text towers.

open_clip pads every text to the context length (77 tokens). In a CLIP text tower
with a causal attention mask, a token only attends to tokens before it, and the pooled
feature is read at the end-of-text token, so the padding after the longest real text
in the batch never influences the result: cutting the batch to that length gives the
same vectors, several times faster for short queries (tests prove the equality).
Towers where this does not hold (bidirectional, 'last'/'first' pooling, HF towers)
take open_clip's own path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SMALL_BATCH = 4  # texts per call up to which one thread is faster on a CPU


def can_truncate(model: Any) -> bool:
    import open_clip

    return (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "attn_mask", None) is not None
        and model.text_pool_type in ("argmax", "eos")
        and not getattr(model.transformer, "grad_checkpointing", False)
    )


def encode_tokens(model: Any, tokens: Any) -> Any:
    """``model.encode_text(tokens)`` (unnormalised), cut to the longest real text."""
    with _few_threads(tokens):
        if not can_truncate(model):
            return model.encode_text(tokens)
        return _encode_truncated(model, tokens)


@contextmanager
def _few_threads(tokens: Any) -> Iterator[None]:
    """A query of a few short texts is a chain of small matrix products: spreading each
    over the CPU's cores costs more in thread wake-ups than it saves, and on a busy
    machine spinning threads make it 5-10x slower. Run those on this thread alone."""
    import torch

    saved = torch.get_num_threads()
    if tokens.device.type != "cpu" or tokens.shape[0] > SMALL_BATCH or saved == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _encode_truncated(model: Any, tokens: Any) -> Any:
    import torch
    from open_clip.transformer import text_global_pool

    # Last non-padding position (+1) over the batch; a tokenizer that pads with
    # another id simply keeps the full length, which is always correct.
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    length = int(((tokens != 0) * positions).max().item())
    length = max(1, length)
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type,
                         eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        if hasattr(model.text_projection, "weight"):
            x = model.text_projection(x)
        else:
            x = x @ model.text_projection
    return x
