"""Settings: one object, filled from arguments, then ``CLIPFIND_*`` environment variables,
then defaults. Every shell builds one and passes it down; nothing below reads the
environment itself.

The environment is read as pydantic-settings' ``BaseSettings`` reads it (prefix
``CLIPFIND_``, any case; list fields as JSON), by the few lines of :func:`environment`:
importing pydantic-settings would cost a cold query a tenth of a second.
``tests/test_config_env.py`` checks both give the same settings."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, get_origin

from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clipfind.onnx_cache import default_model_cache

DEFAULT_MODEL = "ViT-B-32/laion2b_s34b_b79k"
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(text: str | int | None) -> int | None:
    """``"2GB"``, ``"1.5GiB"``, ``"512MB"`` or a byte count as bytes; ``None``/empty: no budget."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(text)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"index memory {text!r} is not a size: write it like 2GB, 512MB or 1.5GiB")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise ValueError(f"index memory must be positive, not {text!r}")
    return value


def default_data_dir() -> Path:
    return Path(user_data_dir("clipfind", appauthor=False))


ENV_PREFIX = "CLIPFIND_"


class SettingsEnvError(ValueError):
    """A ``CLIPFIND_*`` variable that cannot be read (a list field's value is not JSON)."""


def environment(fields: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The values ``CLIPFIND_<FIELD>`` variables give ``fields`` (pydantic field infos by
    name): names in any case (of two that differ only in case, the later one wins), list
    fields decoded from JSON, every other value the string as it is."""
    lowered = {k.lower(): v for k, v in (os.environ if env is None else env).items()}
    found: dict[str, Any] = {}
    for name, info in fields.items():
        value = lowered.get((ENV_PREFIX + name).lower())
        if value is None:
            continue
        if get_origin(info.annotation) is list:
            try:
                value = json.loads(value)
            except ValueError:
                raise SettingsEnvError(
                    f"{ENV_PREFIX}{name.upper()} must be a JSON list, e.g. '[\"a\", \"b\"]'"
                ) from None
        found[name] = value
    return found


class Settings(BaseModel):
    """Everything a run of clipfind can be told. ``model=None`` means: the model the
    collection was indexed with, else :data:`DEFAULT_MODEL`."""

    # as pydantic-settings' BaseSettings configures itself, unknown arguments ignored
    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True, validate_default=True,
                              protected_namespaces=("model_validate", "model_dump"))

    def __init__(self, **values: Any) -> None:
        """Arguments first, then ``CLIPFIND_*`` environment variables, then defaults."""
        super().__init__(**{**environment(type(self).model_fields), **values})

    model: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    collection: str = "default"
    db_url: str | None = None
    device: str = "auto"
    # int8 text tower on CPU ("auto"), checked against fp32 when built: clipfind/text_int8.py
    text_precision: Literal["auto", "fp32", "int8"] = "auto"
    # What runs the towers: ONNX Runtime on a CPU where an export passes its self-check
    # ("auto"), torch, or ONNX Runtime even below the check ("onnx"): docs/engines.md.
    engine: Literal["auto", "torch", "onnx"] = "auto"
    # Exported ONNX towers, keyed by checkpoint identity (clipfind/onnx_cache.py).
    model_cache: Path = Field(default_factory=default_model_cache)
    # Detection: "clip" reads boxes out of the collection's own model; "owlvit"/"owlv2"
    # load an OWL detector (clipfind[owl]): ``owl_model`` (a Hugging Face name or a
    # save_pretrained folder), else that family's default. None: OWL when ``owl_model`` is
    # set, else CLIP (search/detect/choice.py).
    detector: Literal["clip", "owlvit", "owlv2"] | None = None
    owl_model: str | None = None
    batch_size: int = Field(default=32, ge=1, le=4096)
    workers: int = Field(default=0, ge=0, le=64, description="decode threads; 0 = auto")
    max_pixels: int = Field(default=150_000_000, ge=1)
    # HTTP server
    api_key: str | None = None
    roots: list[Path] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    # Host names served besides localhost and the bound address (DNS rebinding
    # protection, api/http/hosts.py); "*" serves any.
    allowed_hosts: list[str] = Field(default_factory=list)
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    # Uploads are capped lower than indexed files: anyone with the key can send them, and
    # a few KB of PNG can claim 40 Mpx (api/http/limits.py states the memory ceiling).
    max_upload_pixels: int = Field(default=40_000_000, ge=1)
    # Requests that encode or decode at once (0 = one per core), and how many more wait.
    heavy_slots: int = Field(default=0, ge=0, le=256)
    heavy_queue: int = Field(default=64, ge=0, le=10_000)
    # Memory the vector index may take, as "2GB", "1.5GiB" (None: the kind follows the
    # collection size). IVF-SQ8 while it fits, else on-disk IVF-PQ: store/index_budget.py.
    index_memory: int | None = None

    @field_validator("index_memory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> int | None:
        return parse_memory(value)  # type: ignore[arg-type]

    @field_validator("data_dir", "model_cache")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # A relative --data-dir would make the SQLite URL and `info` depend on the cwd.
        return value.expanduser().absolute()

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        if not _COLLECTION_NAME.match(value):
            raise ValueError(
                f"collection name {value!r} must be 1-64 letters, digits, '_', '.' or '-'"
            )
        return value

    @property
    def collection_dir(self) -> Path:
        return self.data_dir.expanduser() / "collections" / self.collection

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.collection_dir / 'catalog.db'}"

    @property
    def index_path(self) -> Path:
        return self.collection_dir / "index.faiss"

    @property
    def cache_dir(self) -> Path:
        return self.collection_dir / "cache"
