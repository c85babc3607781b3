"""Where a model runs, decided with or without torch, and torch features to numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def cpu_only(device: str) -> bool:
    """Whether ``device`` is surely the CPU without asking torch: "cpu", or "auto" on a
    machine with no accelerator device nodes (CUDA, ROCm, WSL's GPU) that is not an
    Apple-silicon Mac (MPS) nor Windows (where torch is the only way to know)."""
    if device == "cpu":
        return True
    if device != "auto":
        return False
    import os
    import platform
    import sys

    if sys.platform == "darwin":
        return platform.machine() != "arm64"
    if sys.platform.startswith("win"):
        return False
    nodes = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
    return not any(os.path.exists(node) for node in nodes)


def normalise_features(feats: Any) -> npt.NDArray[np.float32]:
    """L2-normalised float32 rows of a torch feature tensor."""
    import torch.nn.functional as F

    return F.normalize(feats.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def fp32() -> Any:
    import torch

    return torch.float32
