"""The Python API's flexible arguments, turned into what the layers below take: paths,
query terms, filters, picture references (a file, bytes, a PIL image or an indexed
item) as vectors or decoded pictures. Kept apart so :mod:`clipfind.library` reads as the
list of things clipfind does."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipfind.config import Settings
from clipfind.errors import QueryError

if TYPE_CHECKING:
    from clipfind.encoding import Encoder, Vectors
    from clipfind.imageio import DecodedImage
    from clipfind.library import Clipfind
    from clipfind.search.filters import Filters
    from clipfind.search.query import Term
    from clipfind.store.collection import Collection

_ITEM_REF = re.compile(r"^\s*(?:#|id:)(\S*)\s*$")


def default_encoder(settings: Settings, collection: Collection | None) -> Encoder:
    """The open_clip model for ``collection``: ``--model``, else its own, else the default
    (``collection`` is None where a picture is read without one)."""
    from clipfind.config import DEFAULT_MODEL
    from clipfind.encoder import ClipEncoder

    spec = collection.model_spec if collection is not None else settings.model or DEFAULT_MODEL
    return ClipEncoder.from_settings(settings, spec)


def settings_of(base: Settings | None, given: dict[str, Any]) -> Settings:
    """``base`` (or the environment and defaults) with the options ``given`` (``None``:
    not given). A value the settings refuse (``collection="bad/name"``) is clipfind's own
    ``QueryError`` naming the option, not pydantic's ValidationError."""
    from pydantic import ValidationError

    from clipfind.config import SettingsEnvError

    given = {k: v for k, v in given.items() if v is not None}
    try:
        if base is None:
            return Settings(**given)
        return Settings(**{**base.model_dump(), **given}) if given else base
    except SettingsEnvError as exc:
        raise QueryError(str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        why = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise QueryError(f"{where}: {why}") from None


def paths_of(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """One path or many, as absolute paths (``~`` expanded; symlinks kept as given)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out = [Path(os.path.abspath(os.path.expanduser(os.fspath(p)))) for p in paths]
    if not out:
        raise QueryError("give at least one folder or file")
    return out


def terms_of(query: str | Sequence[Term] | None, images: Sequence[str],
             negatives: Sequence[str]) -> list[Term]:
    """Terms from the query syntax (or terms already parsed), example images and
    negative texts; an empty query is refused before any model loads."""
    from clipfind.search.query import build_terms

    if query is None or isinstance(query, str):
        terms = build_terms(query, list(images), list(negatives))
    else:
        terms = [*query, *build_terms(None, list(images), list(negatives))]
    if not terms:
        raise QueryError("the query is empty: give text, an example image or an item id")
    return terms


def filters_of(filters: Filters | None, path: str | None, after: Any, before: Any,
               label: str | None) -> Filters | None:
    from clipfind.search.filters import Filters, parse_date

    loose = Filters(path=path or None, after=parse_date(after), before=parse_date(before, end=True),
                    label=label or None)
    if filters is not None and loose.active:
        raise QueryError("give filters=Filters(...) or path/after/before/label, not both")
    return filters if filters is not None else loose


def item_id(ref: object) -> int | None:
    """The item a picture reference names (an int, ``"#N"`` or ``"id:N"``), else None."""
    if isinstance(ref, bool):
        raise QueryError("an image reference cannot be True/False")
    if isinstance(ref, int):
        return ref
    if not isinstance(ref, str):
        return None
    m = _ITEM_REF.match(ref)
    if m is None:
        return None
    if not m.group(1).isdigit():
        raise QueryError(f"{ref.strip()!r} is not an item id; write #N")
    return int(m.group(1))


def bytes_of(ref: object) -> tuple[bytes | None, str]:
    """``(bytes, name)`` of a file path or raw bytes; ``(None, "")`` for a PIL image.
    A missing file is a NotFoundError that names it (before any model loads)."""
    from PIL import Image

    from clipfind.errors import NotFoundError
    from clipfind.imageio import read_bytes

    if isinstance(ref, bytes | bytearray | memoryview):
        return bytes(ref), "upload"
    if isinstance(ref, Image.Image):
        return None, ""
    if not isinstance(ref, str | os.PathLike):
        raise QueryError(f"an image is a path, bytes, a PIL image or an item id, not {type(ref).__name__}")
    path = Path(os.fspath(ref)).expanduser()
    if not path.is_file():
        raise NotFoundError(f"image {os.fspath(ref)!r} not found: give an image file or an item id #N")
    return read_bytes(path), str(path)


def vector_of(clip: Clipfind, image: object) -> Vectors:
    """An indexed item's stored vector (nothing decoded), else the picture's; a file is
    checked before the model loads."""
    item = item_id(image)
    if item is not None:
        vec = clip._existing().catalog.vector_of(item)
        if vec is None:
            from clipfind.errors import NotFoundError

            raise NotFoundError(f"item #{item} is not in the collection")
        clip.bind()  # the stored vector must share the labels' space
        return vec
    data, name = bytes_of(image)
    if data is None:
        return clip.encoder.encode_images([image])[0]  # type: ignore[list-item]
    from clipfind.imageio import decode_image
    from clipfind.search.validate import check_picture

    check_picture(data, name, clip.settings.max_pixels)  # before the model loads
    decoded = decode_image(data, clip.encoder.image_size, clip.settings.max_pixels, name)
    return clip.encoder.encode_images([decoded.image])[0]


def picture_of(clip: Clipfind, image: object) -> DecodedImage:
    """A picture decoded for detection (search/detect/picture.py's size policy); an
    item's file is read only if it is still the file indexed."""
    from clipfind.search.detect.picture import as_picture, decode_picture, load_indexed_picture

    item = item_id(image)
    if item is not None:
        return load_indexed_picture(indexed_item(clip, item), clip.settings.max_pixels)
    data, name = bytes_of(image)
    if data is None:
        return as_picture(image)  # type: ignore[arg-type]
    return decode_picture(data, name, clip.settings.max_pixels)


def indexed_item(clip: Clipfind, item: int) -> Any:
    """The catalog row of an indexed item (its path, size and mtime)."""
    from clipfind.errors import NotFoundError
    from clipfind.store.status import ItemStatus

    row = clip._existing().catalog.get_item(item)
    if row is None or row.status != ItemStatus.OK:
        raise NotFoundError(f"item #{item} is not in the collection")
    return row


def detect_queries(queries: str | Sequence[str], found_by: Any) -> list[str]:
    """The queries to detect: the given texts, cleaned, or an example's own label."""
    from clipfind.search.detect.choice import ExampleDetector
    from clipfind.search.detect.detector import _clean_queries

    if isinstance(found_by, ExampleDetector):
        return [found_by.label]
    return _clean_queries([queries] if isinstance(queries, str) else list(queries))
