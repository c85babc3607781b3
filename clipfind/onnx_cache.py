"""Where exported ONNX towers live and how a process finds the ones made from the
checkpoint it would load, without importing torch or open_clip.

Layout, in the user cache (``Settings.model_cache``)::

    onnx/<spec hash>/<fingerprint>/manifest.json   # written last: the export is complete
                                  /image.onnx, text.onnx, *.int8.onnx

The fingerprint hashes the spec, the checkpoint files the model was loaded from (path,
size, modification time) and the torch / open_clip versions that exported them. A
process that cannot name the files without open_clip (a pretrained tag lives in the
Hugging Face cache) reads them from each manifest of the spec and takes the one whose
files are still as recorded. Each file is written under a temporary name and renamed;
two processes exporting the same checkpoint at once take turns on a lock, and the
second finds the first one's export.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

MANIFEST = "manifest.json"
FORMAT = 2  # bump when the exported graphs or the manifest change meaning (2: transform, -1 = does not run)


def default_model_cache() -> Path:
    """``CLIPFIND_MODEL_CACHE`` when set (also for an encoder built without settings),
    else the user cache's ``clipfind/models``."""
    named = os.environ.get("CLIPFIND_MODEL_CACHE")
    if named:
        return Path(named).expanduser()
    return Path(user_cache_dir("clipfind", appauthor=False)) / "models"


def versions() -> dict[str, str]:
    """The packages whose code is baked into an export (read without importing them)."""
    out = {"format": str(FORMAT)}
    for dist in ("torch", "open_clip_torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "none"
    return out


def file_identity(paths: list[Path]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of each checkpoint file: a rewritten checkpoint (a
    re-trained local model) changes it, so an old export is never used for new weights."""
    out: list[list[Any]] = []
    for path in paths:
        st = path.stat()
        out.append([str(path), st.st_size, st.st_mtime_ns])
    return out


def local_files(spec: str) -> list[Path]:
    """The weight files of a ``local-dir:`` spec (what open_clip reads); [] otherwise."""
    if not spec.startswith("local-dir:"):
        return []
    folder = Path(spec.removeprefix("local-dir:"))
    return sorted(p for p in folder.glob("open_clip_*") if p.is_file())


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def spec_dir(cache: Path, spec: str) -> Path:
    return cache / "onnx" / _digest(spec)


def export_dir(cache: Path, spec: str, files: list[list[Any]]) -> Path:
    """The folder for one checkpoint's export (``files`` from :func:`file_identity`)."""
    return spec_dir(cache, spec) / _digest(spec, files, versions())


@dataclass(frozen=True)
class Manifest:
    """What an export holds and what its self-check found: ``doc`` is the JSON as
    written (towers, model facts, probe cosines, the tokenizer it was checked with)."""

    folder: Path
    doc: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def tokenizer_context(self) -> int | None:
        """Context length of the plain-Python CLIP BPE (:mod:`clipfind.bpe`) when it gives
        this model's tokenizer's ids; None when texts need open_clip's tokenizer."""
        value = self.doc.get("bpe_context")
        return int(value) if value else None


def read_manifest(folder: Path) -> Manifest | None:
    try:
        doc = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return Manifest(folder, doc) if isinstance(doc, dict) else None


def find_export(cache: Path, spec: str) -> Manifest | None:
    """The complete export made from the checkpoint ``spec`` loads today, or None."""
    root = spec_dir(cache, spec)
    local = local_files(spec)
    if local:
        try:
            folder = export_dir(cache, spec, file_identity(local))
        except OSError:
            return None
        found = read_manifest(folder)
        return found if found is not None and found.doc.get("spec") == spec else None
    if not root.is_dir():
        return None
    want = versions()
    for folder in sorted(root.iterdir()):
        found = read_manifest(folder)
        if found is None or found.doc.get("spec") != spec or found.doc.get("versions") != want:
            continue
        files = found.doc.get("files") or []
        try:
            current = file_identity([Path(f[0]) for f in files])
        except OSError:
            continue
        if current == files:
            return found
    return None


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a temporary file of this process and rename it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def write_manifest(folder: Path, doc: dict[str, Any]) -> Manifest:
    write_atomic(folder / MANIFEST, json.dumps(doc, indent=1, sort_keys=True))
    return Manifest(folder, doc)
