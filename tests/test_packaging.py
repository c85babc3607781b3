"""The wheel is what a user installs: one import name (``clipfind``), and everything the
commands read at run time (prompt templates, the reference model, the web page) inside
it. Built from this checkout, then used from an unpacked copy outside the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        capture_output=True, text=True, cwd=build, timeout=240,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("clipfind-*.whl")
    return path


def test_wheel_has_one_import_name_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"clipfind"}, tops
    for needed in ["clipfind/data/templates/simple.json", "clipfind/data/templates/imagenet.json",
                   "clipfind/data/reference-model/open_clip_model.safetensors",
                   "clipfind/data/reference-model/open_clip_config.json",
                   "clipfind/api/web/static/index.html", "clipfind/api/web/static/js/main.js",
                   "clipfind/search/detect/detector.py", "clipfind/search/zeroshot/labeling.py",
                   "clipfind/indexer/run.py", "clipfind/api/cli/app.py", "clipfind/training/trainer.py",
                   # the catalog's migrations, run when a collection is opened
                   "clipfind/store/migrations/env.py",
                   "clipfind/store/migrations/versions/0001_initial.py"]:
        assert needed in names, needed
    # every package folder in the source tree made it in (a package missing from
    # pyproject's list would be silently dropped)
    for folder, package in [("indexer", "indexer"), ("search", "search"), ("api", "api"),
                            ("training", "training"), ("clipfind", "")]:
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.relative_to(REPO / folder).as_posix()
            assert "/".join(p for p in ["clipfind", package, rel] if p) in names, rel
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_unpacked_wheel_classifies_and_serves_outside_the_tree(wheel: Path, tmp_path: Path,
                                                               tiny_checkpoint: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(work / "photo.jpg")
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1",
           "CLIPFIND_DATA_DIR": str(tmp_path / "data")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=work,
                              env=env, timeout=180)

    where = run("-c", "import clipfind, clipfind.search, clipfind.data; "
                      "print(clipfind.__file__); print(clipfind.search.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout
    proc = run("-m", "clipfind", "classify", "photo.jpg", "--labels", "cat,dog", "--json",
               "--model", f"local-dir:{tiny_checkpoint}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(r["label"] for r in json.loads(proc.stdout)) == ["cat", "dog"]
    settings = (f"Settings(data_dir={str(tmp_path / 'data')!r}, model='local-dir:{tiny_checkpoint}', "
                "allowed_hosts=['testserver'])")
    page = run("-c", "from fastapi.testclient import TestClient\n"
                     "from clipfind.api.http import create_app\n"
                     "from clipfind.config import Settings\n"
                     f"s = {settings}\n"
                     "with TestClient(create_app(s)) as c:\n"
                     "    r = c.get('/'); print(r.status_code, 'clipfind' in r.text.lower())\n"
                     "    print(c.get('/static/js/main.js').status_code)\n")
    assert page.returncode == 0, page.stderr[-2000:]
    assert page.stdout.split() == ["200", "True", "200"], page.stdout
