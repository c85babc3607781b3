"""Every path that opens an indexed item's file checks that it is still the file that
was indexed (clipfind.imageio.open_indexed: size and mtime on the opened descriptor, so a
link swapped in that leads elsewhere is refused): ``search --locate`` through the
installed console script, and the library's detect on an item (``#N``).

The swapped-in target is a text file standing for a private one (``ln -sf /etc/passwd``):
before the check, ``--locate`` read it and failed only at decoding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import clipfind
from clipfind.config import Settings
from clipfind.errors import FileChangedError
from tests.fakes import solid
from tests.test_cli_errors import run

SECRET = "root:x:0:0:root:/root:/bin/bash\n" * 40


@pytest.fixture
def swapped(tmp_path: Path, tiny_checkpoint: Path) -> dict:
    photos = tmp_path / "photos"
    for colour in ("red", "green"):
        solid(photos / f"{colour}.png", colour)
    settings = Settings(data_dir=tmp_path / "data", model=f"local-dir:{tiny_checkpoint}")
    with clipfind.open(settings=settings) as cf:
        cf.index(photos)
        ids = {Path(h.path).name: h.id for h in cf.search("red", k=10).hits}
    secret = tmp_path / "private.txt"
    secret.write_text(SECRET)
    victim = photos / "red.png"
    victim.unlink()
    os.symlink(secret, victim)  # ln -sf private.txt red.png
    return {"settings": settings, "ids": ids, "tmp": tmp_path}


def test_search_locate_skips_a_swapped_file_with_its_reason(swapped):
    argv = ["search", "red", "--locate", "--json", "--data-dir", str(swapped["tmp"] / "data"),
            "--model", swapped["settings"].model]
    proc = run(*argv)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    boxes = {row["id"]: row["boxes"] for row in doc["results"]}
    victim = swapped["ids"]["red.png"]
    assert boxes[victim] == []
    # the reason: the file changed since it was indexed (not that it failed to decode,
    # which would mean it was read); rich may wrap the line
    said = " ".join(proc.stderr.split())
    assert f"item #{victim}'s file has changed since it was indexed" in said, proc.stderr
    assert "root:" not in proc.stdout + proc.stderr


def test_library_detect_and_locate_on_a_swapped_item(swapped):
    victim = swapped["ids"]["red.png"]
    with clipfind.open(settings=swapped["settings"]) as cf:
        with pytest.raises(FileChangedError, match="changed since it was indexed"):
            cf.detect(f"#{victim}", ["a red square"])
        page = cf.search("red", k=10)
        boxes = cf.locate(page, ["a red square"], threshold=0.0)
        assert boxes[victim] == []
        other = swapped["ids"]["green.png"]
        assert cf.detect(f"#{other}", ["a red square"], threshold=0.0).width > 0  # still fine
        assert len(boxes) == 2
