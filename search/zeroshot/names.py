"""What a label and a label set's name may be.

The limits are the catalog's columns (clipfind/store/schema.py). SQLite would store a
longer text or a NUL byte; PostgreSQL refuses both (psycopg ``StringDataRightTruncation``,
``DataError``). Checked where labels and names come in (the command line, a labels file,
the library, HTTP), so both backends answer alike and nothing is scored first.
"""

from __future__ import annotations

from clipfind.errors import QueryError
from clipfind.store.status import LABEL_WIDTH, SET_NAME_WIDTH

MAX_LABEL = LABEL_WIDTH
MAX_SET_NAME = SET_NAME_WIDTH


def check_label(label: str) -> str:
    """``label`` unchanged, or a ``QueryError`` naming it."""
    shown = label[:40] + ("…" if len(label) > 40 else "")
    if len(label) > MAX_LABEL:
        raise QueryError(
            f"label {shown!r} has {len(label)} characters: a label has at most "
            f"{MAX_LABEL} characters (the model reads 77 tokens)"
        )
    if "\x00" in label:
        raise QueryError(f"label {shown!r} contains a NUL (\\x00) character")
    return label


def check_set_name(name: str) -> str:
    """A label set's name, stripped: 1-100 characters, no ':' (``SET:LABEL`` filters),
    no NUL; else a ``QueryError``."""
    name = name.strip()
    if not name or len(name) > MAX_SET_NAME or ":" in name:
        shown = name[:40] + ("…" if len(name) > 40 else "")
        raise QueryError(f"label set name {shown!r} must be 1-{MAX_SET_NAME} characters without ':'")
    if "\x00" in name:
        raise QueryError(f"label set name {name!r} contains a NUL (\\x00) character")
    return name
