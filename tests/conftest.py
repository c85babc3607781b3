"""Shared fixtures. No network, ever: sockets other than loopback are refused and the
Hugging Face hub is told it is offline."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for _key in [k for k in os.environ if k.startswith("CLIPFIND_")]:
    del os.environ[_key]
# Exporting a model to ONNX takes seconds, once per checkpoint: the suite runs torch unless
# a test asks for another engine (tests/test_onnx_engine.py), and never writes to the
# user's cache.
os.environ["CLIPFIND_ENGINE"] = "torch"
os.environ["CLIPFIND_MODEL_CACHE"] = tempfile.mkdtemp(prefix="clipfind-models-")

MODEL_CONFIGS = Path(__file__).parent / "model_configs"
# reference_model / reference_encoder: the project's tiny CLIP trained on synthetic shapes
# postgres_server / catalog_backend: a throw-away PostgreSQL for backend-parametrised tests
pytest_plugins = ["tests.reference", "tests.pg"]
_real_connect = socket.socket.connect


def _guarded_connect(self, address):  # type: ignore[no-untyped-def]
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host in ("localhost", "::1", "testserver") or host.startswith("127.") or host.startswith("/")
    ):
        raise OSError(f"tests must not use the network (tried {address!r})")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    import open_clip

    open_clip.add_model_config(MODEL_CONFIGS)


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    from clipfind.config import Settings

    return Settings(data_dir=tmp_path / "data", model="tiny-clip-test", batch_size=8, workers=2)


@pytest.fixture
def fake_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    from clipfind.config import Settings

    return Settings(data_dir=tmp_path / "data", model="fake-colour", batch_size=4, workers=2)


@pytest.fixture
def fake_encoder():  # type: ignore[no-untyped-def]
    from tests.fakes import ColourEncoder

    return ColourEncoder()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny ViT CLIP saved as a local-dir checkpoint."""
    from tests.fakes import save_tiny_checkpoint

    return save_tiny_checkpoint("tiny-clip-test", tmp_path_factory.mktemp("ckpt") / "tiny-clip")


COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mini"


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    if not COCO_MINI.is_dir():
        pytest.skip("../shared/data/coco-mini is not present")
    return COCO_MINI
