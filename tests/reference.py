"""The reference model fixture: the project's tiny CLIP trained on synthetic shapes.

The model is shipped as package data (``data/reference-model``), so every machine tests
the same weights; only the CPU's float rounding at inference differs between machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reference_model() -> Path:
    """Folder of the shipped reference checkpoint: load it with ``local-dir:PATH``."""
    from clipfind.training.reference import shipped_reference_model

    return shipped_reference_model()


@pytest.fixture(scope="session")
def reference_encoder(reference_model: Path):  # type: ignore[no-untyped-def]
    """A :class:`ClipEncoder` on the reference model (CPU)."""
    from clipfind.encoder import ClipEncoder

    return ClipEncoder(f"local-dir:{reference_model}", device="cpu")
