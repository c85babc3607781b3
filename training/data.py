"""Datasets of ``(image, caption)`` pairs in the formats people already have.

* CSV with a header: an image column (``image``, ``filepath``, ``file``, ``path``) and a
  caption column (``caption``, ``text``, ``title``); paths relative to the CSV's folder;
* JSON Lines: one ``{"image": ..., "caption": ...}`` per line;
* COCO captions JSON (``images`` + ``annotations`` with ``caption``): one pair per
  caption, images from ``images_dir`` or the folder named after the split;
* an ImageFolder (one folder per class): captions are prompt templates filled with the
  class name, a different template each epoch.

Labelled sets for zero-shot evaluation (:func:`load_labelled`) are an ImageFolder or a
CSV with ``image,label``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from clipfind.errors import ClipfindError, ImageDecodeError
from clipfind.imageio import IMAGE_EXTENSIONS, load_image

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("image", "filepath", "file", "path", "filename")
CAPTION_COLUMNS = ("caption", "text", "title", "captions")
LABEL_COLUMNS = ("label", "class", "category")


class DatasetError(ClipfindError):
    """A training or evaluation dataset that cannot be read as given."""

    exit_code = 2


class PairDataset(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> tuple[Image.Image, str]: ...


@dataclass(frozen=True)
class Pair:
    image: Path
    caption: str


class CaptionPairs:
    """Pairs read from disk; an undecodable image is skipped (the next one is used)."""

    def __init__(self, pairs: Sequence[Pair], templates: Sequence[str] | None = None, seed: int = 0) -> None:
        self.pairs = list(pairs)
        self.templates = list(templates) if templates else None  # captions are class names
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def caption(self, i: int) -> str:
        pair = self.pairs[i]
        if not self.templates:
            return pair.caption
        pick = np.random.default_rng([self.seed, self.epoch, i]).integers(len(self.templates))
        return self.templates[int(pick)].replace("{}", pair.caption)

    def __getitem__(self, i: int) -> tuple[Image.Image, str]:
        for j in range(len(self.pairs)):
            k = (i + j) % len(self.pairs)
            try:
                return load_image(self.pairs[k].image).image, self.caption(k)
            except ImageDecodeError as exc:
                log.warning("skipping %s", exc)
        raise DatasetError("no image in the dataset can be decoded")


class Pairs:
    """A view of ``indices`` of a dataset with a transform: what the loader iterates.

    With ``cache`` the transformed pixels are kept after the first epoch (only sound
    when the transform is deterministic and the dataset's images do not change between
    epochs; captions may). The caption is always asked for afresh.
    """

    def __init__(self, data: PairDataset, indices: Sequence[int], transform: Any,
                 cache: bool = False) -> None:
        self.data, self.indices, self.transform = data, list(indices), transform
        self._cache: dict[int, Any] | None = {} if cache else None

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, str]:
        if self._cache is not None and i in self._cache:
            return self._cache[i], _caption(self.data, self.indices[i])
        image, caption = self.data[self.indices[i]]
        pixels = self.transform(image)
        if self._cache is not None:
            self._cache[i] = pixels
        return pixels, caption


def _caption(data: PairDataset, i: int) -> str:
    caption = getattr(data, "caption", None)
    return caption(i) if callable(caption) else data[i][1]


def collate(batch: list[tuple[Any, str]]) -> tuple[Any, list[str]]:
    import torch

    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random split: ``(train, val)`` with ``round(n * fraction)`` in val."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * fraction) if fraction > 0 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def load_pairs(source: Path, images_dir: Path | None = None, templates: Sequence[str] | None = None,
               seed: int = 0) -> CaptionPairs:
    """Open ``source`` (CSV, JSONL, COCO captions JSON or an ImageFolder) as pairs."""
    source = source.expanduser()
    if source.is_dir():
        from clipfind.templates import load_templates

        items = _image_folder(source)
        pairs = [Pair(path, label) for path, label in items]
        return CaptionPairs(pairs, templates or load_templates("imagenet-short"), seed)
    if not source.is_file():
        raise DatasetError(f"{source} does not exist")
    suffix = source.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(source, CAPTION_COLUMNS)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(source)
    elif suffix == ".json":
        rows = _coco_rows(source, images_dir)
    else:
        raise DatasetError(f"{source}: expected a .csv, .jsonl, COCO .json file or an image folder")
    base = images_dir or source.parent
    pairs = [Pair(_resolve(base, img), cap) for img, cap in rows]
    if not pairs:
        raise DatasetError(f"{source} holds no image/caption pairs")
    return CaptionPairs(pairs)


def _resolve(base: Path, image: str) -> Path:
    path = Path(image).expanduser()
    return path if path.is_absolute() else base / path


def _pick(columns: Sequence[str], wanted: Sequence[str], source: Path, what: str) -> str:
    lower = {c.lower().strip(): c for c in columns}
    for name in wanted:
        if name in lower:
            return lower[name]
    raise DatasetError(
        f"{source}: no {what} column (looked for {', '.join(wanted)}; have {', '.join(columns)})"
    )


def _csv_rows(source: Path, value_columns: Sequence[str], what: str = "caption") -> list[tuple[str, str]]:
    with source.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        img_col = _pick(cols, IMAGE_COLUMNS, source, "image")
        val_col = _pick(cols, value_columns, source, what)
        return [(row[img_col], row[val_col]) for row in reader if row.get(img_col)]


def _jsonl_rows(source: Path) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            img = next(doc[k] for k in IMAGE_COLUMNS if k in doc)
            cap = next(doc[k] for k in CAPTION_COLUMNS if k in doc)
        except (ValueError, StopIteration) as exc:
            raise DatasetError(f"{source}:{n}: expected {{\"image\": ..., \"caption\": ...}}") from exc
        for c in cap if isinstance(cap, list) else [cap]:
            rows.append((str(img), str(c)))
    return rows


def _coco_rows(source: Path, images_dir: Path | None) -> list[tuple[str, str]]:
    doc = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
        raise DatasetError(f"{source}: not a COCO captions file (needs 'images' and 'annotations')")
    files = {img["id"]: img["file_name"] for img in doc["images"]}
    if images_dir is None:
        # captions_val2017.json → ../val2017/
        split = source.stem.split("_")[-1]
        images_dir = source.parent.parent / split
    return [(str(images_dir / files[a["image_id"]]), a["caption"].strip())
            for a in doc["annotations"] if "caption" in a and a["image_id"] in files]


def _image_folder(root: Path) -> list[tuple[Path, str]]:
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: an ImageFolder needs one sub-folder per class")
    items = []
    for d in classes:
        label = d.name.replace("_", " ")
        items += [(p, label) for p in sorted(d.rglob("*"))
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return items


@dataclass(frozen=True)
class Labelled:
    """Images with one class label each, for zero-shot evaluation."""

    paths: list[Path]
    labels: list[str]

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))


def load_labelled(source: Path) -> Labelled:
    """An ImageFolder or a CSV of ``image,label`` (paths relative to the CSV)."""
    source = source.expanduser()
    if source.is_dir():
        items = _image_folder(source)
        return Labelled([p for p, _ in items], [label for _, label in items])
    if source.suffix.lower() != ".csv" or not source.is_file():
        raise DatasetError(f"{source}: expected an image folder or a CSV with image,label columns")
    rows = _csv_rows(source, LABEL_COLUMNS, "label")
    return Labelled([_resolve(source.parent, img) for img, _ in rows], [lab for _, lab in rows])
