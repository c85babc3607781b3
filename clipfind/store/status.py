"""Small shared facts of the store: an item's status, how long an ``IN (...)`` list may
grow and how wide a label may be. Free of SQLAlchemy, so checks above the store (and a
one-shot query) read them without importing it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")

# SQLite before 3.32 allows 999 bound parameters per statement; 900 leaves room for the
# statement's other parameters, and PostgreSQL plans such lists as fast as longer ones.
IN_CHUNK = 900

# Column widths that the edge checks too (search/zeroshot/names.py): PostgreSQL refuses a
# longer text where SQLite would store it, so both backends must see the same limits.
LABEL_WIDTH = 200
SET_NAME_WIDTH = 100


class ItemStatus(StrEnum):
    """An item row is an indexed image with a vector, or a file skipped with a reason.
    A ``StrEnum``: stored as its plain value, and equal to it when read back."""

    OK = "ok"
    SKIPPED = "skipped"


def chunked(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size`` (one ``IN (...)`` list each)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
