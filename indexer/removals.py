"""When an index run may remove items. A drive that is not mounted usually leaves its
mount point behind as an empty folder, or another filesystem sits there: removing "gone"
files then empties the collection and loses its labels. So an emptied root, a root on
another device, and the loss of most of a root at once remove nothing unless the caller
allows it (``allow_removals``; on a terminal the CLI asks)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from clipfind.errors import RemovalRefusedError
from clipfind.store import roots as root_facts
from clipfind.store.catalog import Catalog, ItemState

LARGE_SHARE = 0.5  # removing more than this share of a root's items needs consent...
LARGE_MIN = 10  # ...once it is at least this many items
ALLOW = ("allow removals to remove them (clipfind index --allow-removals; POST /index "
         "with \"allow_removals\": true)")

Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class RootTally:
    root: Path
    items: int  # catalog items under the root before the run
    files: int  # files the walk found under it now
    missing: int  # items whose file the walk did not find


def _root_of(path: str, roots: list[Path]) -> Path | None:
    best = None
    for root in roots:
        text = str(root)
        if (path == text or path.startswith(text.rstrip("/") + "/")) and (
                best is None or len(text) > len(str(best))):
            best = root
    return best


def tally(roots: list[Path], existing: dict[str, ItemState], seen: Iterable[str],
          missing: Iterable[str]) -> list[RootTally]:
    """Per root: items before, files now, items missing."""
    counts = {r: [0, 0, 0] for r in roots}
    for group, paths in enumerate((existing, seen, missing)):
        for path in paths:
            root = _root_of(path, roots)
            if root is not None:
                counts[root][group] += 1
    return [RootTally(r, *c) for r, c in counts.items()]


def current_devices(roots: list[Path]) -> dict[str, int]:
    found = {}
    for root in roots:
        try:
            if root.is_dir():
                found[str(root)] = os.stat(root).st_dev
        except OSError:
            continue
    return found


def check_vanished(catalog: Catalog, tallies: list[RootTally], now: dict[str, int]) -> None:
    """Before anything is written: refuse a run over an emptied root, or over a root that
    is on another device than last time while some of its items are missing."""
    before = root_facts.devices(catalog)
    for t in tallies:
        if t.items and not t.files and t.root.is_dir():
            raise RemovalRefusedError(
                f"{t.root} held {t.items} items and now holds no files (an unmounted drive?); "
                f"nothing was changed. Mount it again, or {ALLOW}.")
        old, new = before.get(str(t.root)), now.get(str(t.root))
        if t.missing and old is not None and new is not None and old != new:
            raise RemovalRefusedError(
                f"{t.root} is on another device than when it was indexed (another drive "
                f"mounted there, or none?) and {t.missing} of its {t.items} items are not "
                f"there; nothing was changed. Mount the drive it was on, or {ALLOW}.")


def check_empty_folders(roots: list[Path], missing: Iterable[str]) -> None:
    """A folder inside a root that held at least :data:`LARGE_MIN` of the missing items
    and is there but empty now: a mount point below the root (``clipfind index /mnt``
    with ``/mnt/photos`` unmounted). A deleted folder is gone, not empty."""
    held: dict[Path, int] = {}
    for path in missing:
        folder = _nearest_existing(Path(path).parent, roots)
        if folder is not None:
            held[folder] = held.get(folder, 0) + 1
    for folder, count in sorted(held.items()):
        if count >= LARGE_MIN and _is_empty(folder):
            raise RemovalRefusedError(
                f"{folder} held {count} items and is an empty folder now (an unmounted "
                f"drive?); nothing was changed. Mount it again, or {ALLOW}.")


def _nearest_existing(folder: Path, roots: list[Path]) -> Path | None:
    """``folder`` or its nearest existing parent, while still inside a root."""
    root = _root_of(str(folder), roots)
    while root is not None and folder != root and not folder.is_dir():
        folder = folder.parent
    return folder if root is not None and folder != root and folder.is_dir() else None


def _is_empty(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return next(it, None) is None
    except OSError:
        return False


def check_share(gone_by_root: dict[Path, int], tallies: list[RootTally],
                confirm: Confirm | None) -> None:
    """After the new files are in: removing most of a root needs ``confirm`` to agree."""
    for t in tallies:
        gone = gone_by_root.get(t.root, 0)
        if gone < LARGE_MIN or gone <= LARGE_SHARE * t.items:
            continue
        question = (f"{gone} of {t.items} items of {t.root} are gone (more than "
                    f"{LARGE_SHARE:.0%}): remove them from the collection?")
        if confirm is not None and confirm(question):
            continue
        raise RemovalRefusedError(
            f"{gone} of {t.items} items of {t.root} are gone (more than {LARGE_SHARE:.0%}); "
            f"new and changed files were indexed, nothing was removed. If they are gone for "
            f"good, {ALLOW}; --keep-missing keeps them without asking.")


def gone_per_root(gone_paths: Iterable[str], roots: list[Path]) -> dict[Path, int]:
    out: dict[Path, int] = {}
    for path in gone_paths:
        root = _root_of(path, roots)
        if root is not None:
            out[root] = out.get(root, 0) + 1
    return out
