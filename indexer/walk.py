"""Walking a photo collection: recursive, symlink-loop safe, hidden folders skipped."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clipfind.imageio import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEntry:
    """A candidate image file: absolute path, size in bytes, mtime in nanoseconds."""

    path: str
    size: int
    mtime_ns: int


def _excluded(path: str, name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk(
    roots: Iterable[Path],
    exclude: Iterable[str] = (),
    skip_dirs: Iterable[Path] = (),
    extensions: frozenset[str] = IMAGE_EXTENSIONS,
    rejected: list[tuple[str, str]] | None = None,
) -> Iterator[FileEntry]:
    """Yield every image file under ``roots`` once.

    Hidden files and folders (name starting with ``.``), folders in ``skip_dirs`` (the
    data dir) and paths matching an ``exclude`` glob (full path or name) are left out.
    Symlinked folders are followed, each real folder at most once. Image files whose
    names are not valid UTF-8 cannot be stored in the catalog: they go to ``rejected``
    as ``(printable path, reason)``.
    """
    patterns = tuple(exclude)
    skip_real = {os.path.realpath(p) for p in skip_dirs}
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    for root in roots:
        root_s = os.path.abspath(os.path.expanduser(str(root)))
        if os.path.isfile(root_s):
            entry = _entry(root_s, extensions, ignore_ext=True)
            if entry and not _storable(entry.path):
                _reject(rejected, entry.path)
            elif entry and entry.path not in seen_files:
                seen_files.add(entry.path)
                yield entry
            continue
        stack = [root_s]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
            except OSError as exc:
                log.warning("cannot open folder %s: %s", folder, exc)
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs or os.path.realpath(folder) in skip_real:
                continue
            seen_dirs.add(key)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                log.warning("cannot list folder %s: %s", folder, exc)
                continue
            subdirs = []
            for de in entries:
                if de.name.startswith(".") or _excluded(de.path, de.name, patterns):
                    continue
                try:
                    is_dir = de.is_dir(follow_symlinks=True)
                except OSError:
                    continue
                if is_dir:
                    subdirs.append(de.path)
                    continue
                entry = _entry(de.path, extensions)
                if entry and not _storable(entry.path):
                    _reject(rejected, entry.path)
                    continue
                if entry and entry.path not in seen_files:
                    seen_files.add(entry.path)
                    yield entry
            stack.extend(reversed(subdirs))


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
        return False
    return True


def _reject(rejected: list[tuple[str, str]] | None, path: str) -> None:
    shown = os.fsencode(path).decode("utf-8", "replace")
    log.warning("skipping %s: its name is not valid UTF-8", shown)
    if rejected is not None:
        rejected.append((shown, "file name is not valid UTF-8; rename the file"))


def _entry(path: str, extensions: frozenset[str], ignore_ext: bool = False) -> FileEntry | None:
    if not ignore_ext and os.path.splitext(path)[1].lower() not in extensions:
        return None
    try:
        st = os.stat(path)
    except OSError:  # dangling symlink, permission, vanished
        return None
    if not os.path.isfile(path):
        return None
    return FileEntry(path, st.st_size, st.st_mtime_ns)
