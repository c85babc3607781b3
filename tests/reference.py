"""The reference model fixture: the project's tiny CLIP trained on synthetic shapes.

Trained once by :func:`clipfind.training.reference.ensure_reference_model` (about two
minutes on 2 CPU cores) and cached under ``.cache/reference-model/<recipe hash>``;
parallel pytest processes share one training run through a file lock.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def reference_model() -> Path:
    """Folder of the trained reference checkpoint: load it with ``local-dir:PATH``."""
    from clipfind.training.reference import ensure_reference_model

    return ensure_reference_model()


@pytest.fixture(scope="session")
def reference_encoder(reference_model: Path):  # type: ignore[no-untyped-def]
    """A :class:`ClipEncoder` on the reference model (CPU)."""
    from clipfind.encoder import ClipEncoder

    return ClipEncoder(f"local-dir:{reference_model}", device="cpu")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first test that needs the reference model may train it (~3.5 min on 2 cores):
    give such tests more than the suite's default per-test timeout."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"reference_model", "reference_encoder"} and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(1200))
