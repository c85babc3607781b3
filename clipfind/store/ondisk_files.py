"""The files of an on-disk index beside ``index.faiss``: its inverted lists
(``<tag>.ivfdata``) and its refinement stage (``<tag>.sq.faiss``, ``<tag>.ids``,
``<tag>.codes``). ``<tag>`` is unique to one build, so a new build never writes over the
files a running search has mapped; the sidecar names the tag, and a save removes the
files of the tag it replaced (under the save's exclusive lock, so no load pairs a new
header with old lists)."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss

from clipfind.store.refine import Refiner

SUFFIXES = (".ivfdata", ".sq.faiss", ".ids", ".codes")


def files_of(folder: Path, tag: str) -> list[Path]:
    return [folder / f"{tag}{suffix}" for suffix in SUFFIXES]


def tag_of(data_file: Path) -> str:
    return data_file.name.removesuffix(".ivfdata")


def move_into(index: faiss.Index, data_file: Path, folder: Path) -> Path:
    """Move a build's files into ``folder`` (where the index file is saved); the lists
    stay mapped, and the index header names the moved file. The new data file."""
    if data_file.parent.resolve() == folder.resolve():
        return data_file
    tag = tag_of(data_file)
    for src, dst in zip(files_of(data_file.parent, tag), files_of(folder, tag), strict=True):
        shutil.move(src, dst)
    moved = folder / data_file.name
    faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists).filename = str(moved)
    return moved


def remove_files(folder: Path, tag: str) -> None:
    for path in files_of(folder, tag):
        path.unlink(missing_ok=True)


def load(path: Path, tag: str) -> tuple[faiss.Index, Refiner]:
    """The index saved at ``path`` with its lists and refinement stage (memory-mapped)."""
    folder = path.parent
    data, sq, ids, codes = files_of(folder, tag)
    if not data.is_file():
        raise FileNotFoundError(data)
    index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR)
    return index, Refiner.open(sq, ids, codes)
