"""Labels and prompt templates become text vectors.

A label's vector is the mean of its prompts' vectors ("a photo of a {}." filled with the
label, once per template), re-normalised: CLIP's prompt ensembling. Label vectors are
cached per (model, labels, templates), so a server classifying many images, or a
``label`` run, encodes each prompt once.

"None of these" comes from a *background* label set: content-free words ("object",
"thing", ...) put through the same templates. A label is only given to an image whose
vector is closer to the label than to every background prompt (see ``search.scoring``).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clipfind.encoding import Encoder
from clipfind.errors import NotFoundError, QueryError
from clipfind.search.zeroshot.names import check_label

Vectors = npt.NDArray[np.float32]

DEFAULT_TEMPLATES = "simple"  # data/templates/simple.json; `imagenet` for CLIP's 80
# Content-free words: the background an image must beat a label against. Several, so
# one odd word's quirks do not decide; each is templated like a label.
DEFAULT_BACKGROUND: tuple[str, ...] = ("object", "thing", "something")
_ENCODE_CHUNK = 256  # below the encoder's text LRU size, so a call never thrashes it
_CACHE_PER_ENCODER = 32


@dataclass(frozen=True)
class PromptVectors:
    """Label vectors ``(m, d)`` and background vectors ``(b, d)``, L2-normalised."""

    labels: tuple[str, ...]
    templates: tuple[str, ...]
    background: tuple[str, ...]
    vectors: Vectors
    background_vectors: Vectors


# -- labels ------------------------------------------------------------------------
def parse_labels(text: str | Sequence[str]) -> list[str]:
    """``"cat, dog,car"`` or a list → unique, stripped labels in the order given."""
    items = text.split(",") if isinstance(text, str) else list(text)
    labels = list(dict.fromkeys(s.strip() for s in items if s and s.strip()))
    if not labels:
        raise QueryError("no labels given: pass --labels 'cat,dog' or --labels-file FILE")
    return [check_label(label) for label in labels]


def read_labels_file(path: Path) -> list[str]:
    """One label per line (``#`` comments, blank lines ignored), or a JSON/YAML list."""
    try:
        raw = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(f"labels file {path} not found") from exc
    except OSError as exc:
        raise QueryError(f"cannot read labels file {path}: {exc.strerror or exc}") from exc
    return parse_labels(_read_list(raw, Path(path)))


def _read_list(raw: str, path: Path) -> list[str]:
    stripped = raw.lstrip()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data: Any = yaml.safe_load(raw)
    elif path.suffix.lower() == ".json" or stripped.startswith("["):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise QueryError(f"{path}: not valid JSON ({exc.msg})") from exc
    else:
        return [line for line in raw.splitlines() if not line.strip().startswith("#")]
    if not isinstance(data, list) or not all(isinstance(x, str | int | float) for x in data):
        raise QueryError(f"{path}: expected a list of strings")
    return [str(x) for x in data]


# -- templates -----------------------------------------------------------------------
def resolve_templates(templates: str | Path | Sequence[str] | None) -> tuple[str, ...]:
    """A shipped template set by name (``simple``, ``imagenet``, ``imagenet-short``,
    ``plain``), a file (``.txt`` one per line, or ``.json``), one template with ``{}``,
    or a list of templates."""
    if templates is None:
        templates = DEFAULT_TEMPLATES
    if isinstance(templates, str | Path):
        found = _named_or_file(str(templates))
    else:
        found = [str(t) for t in templates]
    found = list(dict.fromkeys(t.strip() for t in found if t.strip()))
    bad = [t for t in found if "{}" not in t]
    if not found or bad:
        raise QueryError(f"templates must each contain '{{}}' for the label; got {bad or found!r}")
    return tuple(found)


def _named_or_file(name: str) -> list[str]:
    if "{}" in name and not Path(name).expanduser().is_file():
        return [name]
    from clipfind.templates import load_templates  # shipped sets: data/templates/

    return load_templates(name)


# -- vectors -------------------------------------------------------------------------
_cache: weakref.WeakKeyDictionary[Any, OrderedDict[tuple, Vectors]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def label_vectors(encoder: Encoder, labels: Sequence[str], templates: Sequence[str]) -> Vectors:
    """``(len(labels), d)``: each label's prompts encoded, averaged, re-normalised.
    Cached per encoder (= model) and (labels, templates)."""
    key = (getattr(encoder, "spec", ""), tuple(labels), tuple(templates))
    with _cache_lock:
        per_model = _cache.setdefault(encoder, OrderedDict())
        hit = per_model.get(key)
        if hit is not None:
            per_model.move_to_end(key)
            return hit
    prompts = [t.replace("{}", label) for label in labels for t in templates]
    vecs = np.concatenate([
        encoder.encode_texts(prompts[i : i + _ENCODE_CHUNK])
        for i in range(0, len(prompts), _ENCODE_CHUNK)
    ]).astype(np.float32)
    mean = vecs.reshape(len(labels), len(templates), -1).mean(axis=1)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    mean = np.ascontiguousarray(mean, dtype=np.float32)
    with _cache_lock:
        per_model[key] = mean
        while len(per_model) > _CACHE_PER_ENCODER:
            per_model.popitem(last=False)
    return mean


def prompt_vectors(
    encoder: Encoder,
    labels: Sequence[str],
    templates: str | Path | Sequence[str] | None = None,
    background: Sequence[str] | None = DEFAULT_BACKGROUND,
) -> PromptVectors:
    """Label and background vectors for one classification task. ``background=()``
    or ``None`` switches the "none of these" check off."""
    labels_t = tuple(parse_labels(labels))
    temps = resolve_templates(templates)
    bg = tuple(b for b in (background or ()) if b not in labels_t)
    vecs = label_vectors(encoder, labels_t, temps)
    bg_vecs = label_vectors(encoder, bg, temps) if bg else np.zeros((0, vecs.shape[1]), np.float32)
    return PromptVectors(labels_t, temps, bg, vecs, bg_vecs)
