"""Building a model whose weights come from a checkpoint without paying for random ones.

open_clip's factory builds every module with its random initialisation (a normal or
uniform draw over each of ViT-B-32's 151 M parameters) and then copies the checkpoint
over it: on a CPU the draws cost more than reading the weights. Inside
:func:`fast_weights`, on the calling thread only:

* ``torch.nn.init``'s functions leave their tensor as it is, so parameters stay the
  uninitialised memory ``torch.empty`` gave them (never touched, so never paged in);
* ``Module.load_state_dict`` *assigns* the checkpoint's tensors instead of copying
  them (each converted first to the device and dtype of the parameter it replaces). A
  safetensors checkpoint is memory-mapped by ``safetensors.torch.load_file``, so CPU fp32
  weights are the page cache's own pages: no copy, and only the pages a forward pass
  reads are ever brought in.

Everything else is open_clip's own code path (``create_model_and_transforms`` with its
pretrained tags, ``hf-hub:`` and ``local-dir:`` schemas, state-dict conversions and
strict key checks), so a missing or unexpected key still fails as it would. Other
threads are untouched: the patched functions check a thread-local flag, so a server
building a model for training on another thread at the same moment gets its random
weights as usual.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_local = threading.local()
_patch_lock = threading.Lock()
_patched: list[tuple[Any, str, Any]] = []  # (owner, name, original) while any thread loads
_users = 0

# torch.nn.init's in-place initialisers (the ones nn.Linear, nn.Embedding, nn.LayerNorm,
# nn.MultiheadAttention, nn.Conv2d and open_clip's init_parameters call).
INIT_FUNCTIONS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
    "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_", "sparse_",
)


def active() -> bool:
    """Whether the calling thread is inside :func:`fast_weights`."""
    return bool(getattr(_local, "depth", 0))


@contextmanager
def fast_weights() -> Iterator[None]:
    """Build models without random initialisation and load state dicts by assignment,
    on this thread, for the duration of the block. Only for models whose every
    parameter is then loaded from a checkpoint (open_clip loads with ``strict=True``)."""
    _install()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        _uninstall()


def _install() -> None:
    import torch

    global _users
    with _patch_lock:
        _users += 1
        if _users > 1:
            return
        originals = {id(f): f for n in INIT_FUNCTIONS if (f := getattr(torch.nn.init, n, None))}
        # Modules that bound an initialiser by name at import (torch.nn.modules.activation
        # imports xavier_uniform_ for MultiheadAttention) get the skipping one too.
        for module in _holders():
            for attr, value in list(vars(module).items()):
                if id(value) in originals and originals[id(value)] is value:
                    _patched.append((module, attr, value))
                    setattr(module, attr, _skipping(value))
        _patched.append((torch.nn.Module, "load_state_dict", torch.nn.Module.load_state_dict))
        torch.nn.Module.load_state_dict = _assigning(torch.nn.Module.load_state_dict)  # type: ignore[method-assign]


def _holders() -> list[Any]:
    import sys

    return [m for name, m in list(sys.modules.items()) if m is not None and (
        name.startswith(("torch.nn.", "open_clip.", "timm.layers", "timm.models"))
        or name in ("torch.nn", "open_clip"))]


def _uninstall() -> None:
    global _users
    with _patch_lock:
        _users -= 1
        if _users > 0:
            return
        for module, attr, original in reversed(_patched):
            setattr(module, attr, original)
        _patched.clear()


def _skipping(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def init(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        if active():
            return tensor  # its value comes from the checkpoint
        return original(tensor, *args, **kwargs)

    return init


def _assigning(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def load_state_dict(module: Any, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        if not active():
            return original(module, state_dict, strict=strict, assign=assign)
        return original(module, matched(module, state_dict), strict=strict, assign=True)

    return load_state_dict


def matched(module: Any, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``state_dict`` with each tensor on the device and in the dtype of the parameter or
    buffer it will replace (what a copying load does implicitly), so assigning keeps
    the model's own layout: fp16 weights on CUDA, an fp32 model from an fp16 file."""
    import torch

    current = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        have = current.get(key)
        if isinstance(value, torch.Tensor) and have is not None and (
                value.dtype != have.dtype or value.device != have.device):
            value = value.to(device=have.device, dtype=have.dtype)
        out[key] = value
    return out
