"""Walking a real folder tree: nesting, hidden things, the data dir, loops, odd names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipfind.indexer.walk import walk


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _names(root: Path, **kw: object) -> list[str]:
    return [os.path.relpath(e.path, root) for e in walk([root], **kw)]  # type: ignore[arg-type]


def test_nested_folders_extensions_and_hidden_things(tmp_path):
    root = tmp_path / "photos"
    for rel in ("a.jpg", "b.PNG", "2020/summer/c.jpeg", "2020/d.webp", "deep/1/2/3/4/e.heic",
                "f.tiff", "g.avif", "h.bmp", "i.gif", "j.jfif"):
        _touch(root / rel)
    for rel in ("notes.txt", "raw.cr2", ".hidden.jpg", ".thumbnails/t.jpg", "2020/.cache/x.png"):
        _touch(root / rel)
    got = _names(root)
    assert sorted(got) == sorted(["a.jpg", "b.PNG", "2020/summer/c.jpeg", "2020/d.webp",
                                  "deep/1/2/3/4/e.heic", "f.tiff", "g.avif", "h.bmp", "i.gif",
                                  "j.jfif"])
    entry = next(e for e in walk([root]) if e.path.endswith("a.jpg"))
    st = os.stat(entry.path)
    assert (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert os.path.isabs(entry.path)


def test_data_dir_inside_the_collection_is_skipped(tmp_path):
    root = tmp_path / "photos"
    _touch(root / "a.jpg")
    _touch(root / "clipfind-data" / "collections" / "default" / "cache" / "thumb.jpg")
    assert _names(root, skip_dirs=[root / "clipfind-data"]) == ["a.jpg"]


def test_symlink_loops_are_safe_and_each_folder_walked_once(tmp_path):
    root = tmp_path / "photos"
    _touch(root / "sub" / "a.jpg")
    os.symlink(root, root / "sub" / "back-to-root")  # loop
    os.symlink("self", root / "self")  # a link to itself (ELOOP)
    os.symlink(tmp_path / "nowhere.jpg", root / "dangling.jpg")
    outside = tmp_path / "elsewhere"
    _touch(outside / "b.jpg")
    os.symlink(outside, root / "linked")  # a real folder outside: followed once
    os.symlink(outside, root / "linked-again")
    got = _names(root)
    assert sorted(got) == ["linked/b.jpg", "sub/a.jpg"]


def test_unicode_names_are_kept(tmp_path):
    root = tmp_path / "photos"
    names = ["café.jpg", "日本/東京.png", "emoji 🐶.jpg", "ÅngströmÑ/über.webp"]
    for n in names:
        _touch(root / n)
    assert sorted(_names(root)) == sorted(names)


def test_names_that_are_not_utf8_are_reported_not_yielded(tmp_path):
    root = tmp_path / "photos"
    _touch(root / "ok.jpg")
    try:
        _touch(Path(os.fsdecode(os.fsencode(root) + b"/bad\xff.jpg")))
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    rejected: list[tuple[str, str]] = []
    assert _names(root, rejected=rejected) == ["ok.jpg"]
    assert len(rejected) == 1
    shown, reason = rejected[0]
    assert shown.endswith("bad\ufffd.jpg") and "UTF-8" in reason
    shown.encode("utf-8")  # printable and storable


def test_exclude_globs_on_names_and_paths(tmp_path):
    root = tmp_path / "photos"
    for rel in ("keep.jpg", "skip-me.jpg", "raw/a.jpg", "2020/raw/b.jpg", "2020/c.jpg",
                "screens/Screenshot 1.png"):
        _touch(root / rel)
    got = _names(root, exclude=["skip-*", "raw", "*/screens/*"])
    assert sorted(got) == ["2020/c.jpg", "keep.jpg"]


def test_a_file_given_as_root_and_roots_that_overlap(tmp_path):
    root = tmp_path / "photos"
    a = _touch(root / "a.jpg")
    _touch(root / "sub" / "b.jpg")
    got = [e.path for e in walk([a, root, root / "sub"])]
    assert sorted(got) == sorted([str(a), str(root / "sub" / "b.jpg")])  # each once
