"""Helpers for the API, schema and web tests (no tests here): a small photo folder
with known colours and awkward files, apps built with the colour encoder, job polling."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from clipfind.api.http import create_app
from clipfind.config import Settings
from tests.fakes import ColourEncoder, solid

COLOURS = ("red", "green", "blue", "yellow")


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def bomb_png(side: int = 5000) -> bytes:
    """A blank ``side``×``side`` PNG: tens of megapixels in a few kilobytes."""
    buf = io.BytesIO()
    Image.new("1", (side, side), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def rotated_jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (60, 30)) -> Path:
    """A landscape JPEG whose EXIF says 'rotate 90°': a viewer shows it portrait."""
    exif = Image.Exif()
    exif[274] = 6
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:] = colour
    arr[:, : size[0] // 4] = (255, 255, 255)  # a white band on the left (top once rotated)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, "JPEG", exif=exif, quality=95)
    return path


def half_and_half(path: Path, size: tuple[int, int] = (160, 80)) -> Path:
    """Left half red, right half blue."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:, : size[0] // 2] = (255, 0, 0)
    arr[:, size[0] // 2 :] = (0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def make_photos(root: Path) -> Path:
    """Solid colours, a nested folder, an EXIF-rotated JPEG, a two-colour image and a
    text file named .jpg (skipped by the indexer)."""
    for colour in COLOURS:
        solid(root / f"{colour}.jpg", colour)
    solid(root / "nested" / "white.png", "white")
    rotated_jpeg(root / "rotated.jpg", (200, 0, 200))
    half_and_half(root / "half.png")
    (root / "notes.jpg").write_text("not an image at all")
    return root


def app_settings(tmp: Path, **extra: Any) -> Settings:
    # TestClient sends 'Host: testserver': allowed explicitly, as a proxy's name would be.
    given = {"data_dir": tmp / "data", "model": "fake-colour", "batch_size": 4, "workers": 2,
             "roots": [tmp / "photos"], "allowed_hosts": ["testserver"], **extra}
    return Settings(**given)


def wait_job(client: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s")


@contextmanager
def running_app(settings: Settings, encoder: Any | None = None, index: bool = True,
                **client_args: Any) -> Iterator[TestClient]:
    """A TestClient (lifespan run) over ``settings`` with the colour encoder; the
    configured roots indexed through ``POST /index`` first."""
    enc = encoder or ColourEncoder()
    app = create_app(settings, lambda _s, _c: enc)
    with TestClient(app, **client_args) as client:
        if index:
            headers = {"X-API-Key": settings.api_key} if settings.api_key else {}
            job = client.post("/index", json={}, headers=headers).json()
            deadline = time.monotonic() + 60
            while job["status"] in ("queued", "running") and time.monotonic() < deadline:
                time.sleep(0.02)
                job = client.get(f"/jobs/{job['id']}", headers=headers).json()
            assert job["status"] == "done", job
        yield client


def ids_by_name(client: TestClient) -> dict[str, int]:
    page = client.get("/search", params={"q": "red", "k": 200}).json()
    return {hit["name"]: hit["id"] for hit in page["results"]}
