"""Exporting a loaded open_clip model's towers to ONNX, and the self-check that decides
whether ONNX Runtime may encode for it.

The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) is used: with the
installed torch it exports open_clip's ViT, timm and text towers in seconds, where the
dynamo exporter takes several times longer for the same graph. Inputs are ``pixels``
``(n, 3, H, W)`` and ``tokens`` ``(n, L)``; a causal text tower is exported with a
variable ``L`` so queries run cut to their longest real token (``clipfind.text_tower``).
int8 variants are made with ONNX Runtime's dynamic quantisation (int8 weights, 8-bit
activations scaled on the fly). Nothing here is imported unless torch is already needed.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from clipfind import onnx_cache
from clipfind.engine_policy import DOES_NOT_RUN
from clipfind.onnx_cache import Manifest
from clipfind.onnx_towers import OnnxTowers, normalise
from clipfind.pixels import replayable
from clipfind.text_int8 import PROBE_TEXTS

log = logging.getLogger(__name__)


class _Image(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class _Text(torch.nn.Module):
    """``encode_text``; with ``truncates`` the tokens may be any length up to the
    context (the causal mask and positions are cut to it, as text_tower does)."""

    def __init__(self, model: Any, truncates: bool) -> None:
        super().__init__()
        self.model = model
        self.truncates = truncates

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.truncates:
            return self.model.encode_text(tokens)
        from open_clip.transformer import text_global_pool

        m = self.model
        # Positions and the causal mask computed from the tokens, not sliced by a Python
        # int: a traced slice is a constant, and the graph would accept one length only.
        pos = torch.cumsum(torch.ones_like(tokens[0]), 0) - 1
        mask = torch.zeros(pos.shape[0], pos.shape[0], dtype=m.attn_mask.dtype)
        mask = mask.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
        x = m.token_embedding(tokens) + m.positional_embedding.index_select(0, pos)
        for block in m.transformer.resblocks:
            x = x + block.ls_1(_attention(block.attn, block.ln_1(x), mask))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        x = m.ln_final(x)
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if m.text_projection is not None:
            x = m.text_projection(x) if hasattr(m.text_projection, "weight") else x @ m.text_projection
        return x


def _attention(attn: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``nn.MultiheadAttention`` (batch first, self-attention) written out: traced, its
    own code reads the sequence length as a Python int, which the graph keeps as a
    constant; here every reshape infers it (-1)."""
    n, heads = x.shape[0], attn.num_heads
    width = attn.embed_dim
    q, k, v = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, -1)
    q, k, v = (t.reshape(n, -1, heads, width // heads).transpose(1, 2) for t in (q, k, v))
    scores = (q * (width // heads) ** -0.5) @ k.transpose(-1, -2) + mask
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, -1, width)
    return attn.out_proj(out)


def exportable_text(model: Any) -> bool:
    """Whether the text tower can be exported cut to the query's length: a causal
    open_clip tower of plain batch-first blocks (what :class:`_Text` writes out)."""
    from open_clip.transformer import ResidualAttentionBlock

    from clipfind.text_tower import can_truncate

    blocks = list(getattr(getattr(model, "transformer", None), "resblocks", []))
    return (
        can_truncate(model)
        and getattr(model.transformer, "batch_first", False)
        and all(
            type(b) is ResidualAttentionBlock
            and isinstance(b.attn, torch.nn.MultiheadAttention)
            and not hasattr(b, "ln_1_kv")
            and b.attn.batch_first
            for b in blocks
        )
    )


def checkpoint_files(spec: Any) -> list[Path]:
    """The files open_clip loaded ``spec``'s weights from (their identity keys the export)."""
    if spec.is_local:
        return onnx_cache.local_files(spec.model_name)
    try:
        if spec.model_name.startswith("hf-hub:"):
            from huggingface_hub import try_to_load_from_cache

            repo = spec.model_name.removeprefix("hf-hub:")
            found = [
                try_to_load_from_cache(repo, name)
                for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
            ]
            return [Path(f) for f in found if isinstance(f, str)]
        if spec.pretrained is None:
            return []
        if Path(spec.pretrained).is_file():
            return [Path(spec.pretrained).resolve()]
        from open_clip.pretrained import download_pretrained, get_pretrained_cfg

        path = download_pretrained(get_pretrained_cfg(spec.model_name, spec.pretrained))
        return [Path(path)] if path else []
    except Exception:  # unknown file: the export is keyed by the spec and versions alone
        return []


def export(loaded: Any, cache: Path) -> tuple[Manifest, bool]:
    """The export of ``loaded`` (a :class:`clipfind.modelspec.LoadedModel` in fp32 on a
    CPU) and whether it was made now (else found in ``cache``, its self-check from the
    model that made it). Raises when neither tower exports."""
    files = onnx_cache.file_identity(checkpoint_files(loaded.spec))
    folder = onnx_cache.export_dir(cache, loaded.spec.spec, files)
    found = onnx_cache.read_manifest(folder)
    if found is not None:
        return found, False
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):  # a second process waits, then finds the export
        found = onnx_cache.read_manifest(folder)
        if found is not None:
            return found, False
        started = time.perf_counter()
        doc = _export_towers(loaded, folder)
        doc.update(spec=loaded.spec.spec, files=files, versions=onnx_cache.versions())
        manifest = Manifest(folder, doc)
        doc["check"] = self_check(loaded, manifest)
        doc["probe_vectors"] = probe_vectors(loaded)
        doc["probe_image_vectors"] = probe_image_vectors(loaded)
        doc["transform"] = replayable(loaded.preprocess)
        doc["export_s"] = round(time.perf_counter() - started, 2)  # graphs, int8 copies, checks
        log.info("exported %s to ONNX in %.1fs (%s)", loaded.spec.spec, doc["export_s"], folder)
        return onnx_cache.write_manifest(folder, doc), True


def _export_towers(loaded: Any, folder: Path) -> dict[str, Any]:
    model = loaded.model
    size = _image_size(model)
    truncates = exportable_text(model)
    context = int(getattr(model, "context_length", 77))
    tokens = torch.as_tensor(_tokens(loaded, ["a photo of a dog", "x"]))
    example = tokens[:, : max(2, _real_length(tokens))] if truncates else tokens
    doc: dict[str, Any] = {
        "image_size": size,
        "text_truncates": truncates,
        "context_length": context,
        "logit_scale": float(model.logit_scale.exp().item()),
        "logit_bias": None if getattr(model, "logit_bias", None) is None else float(model.logit_bias.item()),
        "bpe_context": _bpe_context(loaded.tokenizer),
        "towers": [],
        "failed": {},
    }
    jobs = (
        ("image", _Image(model), torch.rand(2, 3, size, size), "pixels"),
        ("text", _Text(model, truncates), example, "tokens"),
    )
    for name, module, example, input_name in jobs:
        axes = {0: "n", 1: "length"} if input_name == "tokens" and truncates else {0: "n"}
        try:
            _export_one(module, example, input_name, axes, folder / f"{name}.onnx")
        except Exception as exc:  # an operator the exporter lacks, a graph too big, ...
            doc["failed"][name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            continue
        doc["towers"].append(name)
        try:
            _quantise(folder / f"{name}.onnx", folder / f"{name}.int8.onnx")
            doc["towers"].append(f"{name}.int8")
        except Exception as exc:
            doc["failed"][f"{name}.int8"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if not doc["towers"]:
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in doc["failed"].items()))
    with torch.inference_mode():
        doc["dim"] = int(model.encode_text(tokens[:1]).shape[-1])
    return doc


def _export_one(
    module: Any, example: torch.Tensor, input_name: str, axes: dict[int, str], path: Path
) -> None:
    tmp = path.with_name(f".{path.name}.{id(module)}.tmp")
    # Grad mode on: without it nn.MultiheadAttention takes its fused fast path, an
    # operator the ONNX exporter does not know. Nothing is trained or kept.
    with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shapes read as Python ints
        torch._C._jit_set_onnx_log_enabled(False)  # else a failure prints the whole graph
        torch.onnx.export(
            module.eval(),
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=17,
            input_names=[input_name],
            output_names=["features"],
            dynamic_axes={input_name: axes, "features": {0: "n"}},
        )
    tmp.replace(path)


def _quantise(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(f".{target.name}.tmp")
    root = logging.getLogger()
    quiet = logging.NullHandler()
    root.addHandler(quiet)  # so logging.warning() does not install a stderr handler
    saved, root.disabled = root.disabled, True  # its pre-processing hint, every time
    try:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
    finally:
        root.disabled = saved
        root.removeHandler(quiet)
    tmp.replace(target)


def _image_size(model: Any) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, tuple | list) else size)


def _real_length(tokens: torch.Tensor) -> int:
    from clipfind.onnx_towers import longest

    return longest(tokens.numpy())


def _tokens(loaded: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(loaded.tokenizer(texts), dtype=np.int64)


def _bpe_context(tokenizer: Any) -> int | None:
    """The context length when :class:`clipfind.bpe.ClipBPE` gives ``tokenizer``'s ids
    (checked on the probe texts and a few hard strings), else None."""
    from open_clip.tokenizer import SimpleTokenizer

    from clipfind.bpe import ClipBPE

    if type(tokenizer) is not SimpleTokenizer or tokenizer.reduction_fn is not None:
        return None
    try:
        plain = ClipBPE(int(tokenizer.context_length))
    except (OSError, ValueError):
        return None
    texts = [*PROBE_TEXTS, "", "Ünïcödé &amp; 日本語 😀", "word " * 100]
    same = np.array_equal(plain(texts), np.asarray(tokenizer(texts)))
    return int(tokenizer.context_length) if same else None


def probe_vectors(loaded: Any) -> dict[str, list[float]]:
    """Torch fp32 vectors of the text a collection recognises its model by (the first
    probe text, clipfind/store/collection.py), so a torch-free query checks the
    collection's model without running the text tower twice."""
    from clipfind.text_tower import encode_tokens

    text = PROBE_TEXTS[0]
    with torch.inference_mode():
        vec = encode_tokens(loaded.model, torch.as_tensor(_tokens(loaded, [text]))).float().numpy()
    return {text: normalise(vec)[0].tolist()}


def probe_image_vectors(loaded: Any) -> list[list[float]]:
    """Torch fp32 vectors of the probe pictures, so a torch-free index run checks the
    image tower against these weights (clipfind.onnx_engine.cold_images)."""
    with torch.inference_mode():
        vecs = loaded.model.encode_image(probe_images(loaded.preprocess)).float().numpy()
    return [[round(float(x), 7) for x in row] for row in normalise(vecs)]


# -- the self-check ---------------------------------------------------------------------
def probe_images(preprocess: Any) -> torch.Tensor:
    """The self-check's fixed image probe through the model's own transform."""
    from clipfind.pixels import probe_pictures

    return torch.stack([preprocess(p) for p in probe_pictures()])


def self_check(loaded: Any, manifest: Manifest) -> dict[str, float]:
    """Lowest cosine to the torch fp32 model of each exported tower over the probes."""
    from clipfind.text_tower import encode_tokens

    model = loaded.model
    towers = OnnxTowers(manifest, None, None)
    out: dict[str, float] = {}
    with torch.inference_mode():
        pixels = probe_images(loaded.preprocess)
        ref_img = normalise(model.encode_image(pixels).float().numpy())
        tokens = _tokens(loaded, list(PROBE_TEXTS))
        ref_txt = normalise(encode_tokens(model, torch.as_tensor(tokens)).float().numpy())
    for name in manifest.doc["towers"]:
        tower, _, precision = name.partition(".")
        try:
            if tower == "image":
                got, ref = towers.encode_pixels(pixels.numpy(), precision or "fp32"), ref_img
            else:
                got, ref = towers.encode_tokens(tokens, precision or "fp32"), ref_txt
            out[name] = round(float((normalise(got) * ref).sum(1).min()), 6)
        except Exception as exc:  # a session that does not load or run: never chosen
            log.info("ONNX %s does not run: %s", name, exc)
            out[name] = DOES_NOT_RUN
    return out
