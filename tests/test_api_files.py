"""An item's file is served (original, thumbnail, detection on the item) only while it
is still the file that was indexed: swapping it for a link to a secret (``ln -sf
/etc/passwd victim.jpg``), replacing it, or putting a FIFO in its place is 409 with a
message, never the other file's bytes. A photo indexed through a link keeps working."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.fakes import solid
from tests.test_api_support import app_settings, ids_by_name, make_photos, running_app

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"


def _refused(client, item_id: int) -> None:  # type: ignore[no-untyped-def]
    """Every URL that reads the item's file answers 409 with a message, and no bytes
    of whatever the path leads to now."""
    for r in (client.get(f"/items/{item_id}/image"), client.get(f"/items/{item_id}/thumbnail"),
              client.get(f"/items/{item_id}/thumbnail", params={"size": 1024}),
              client.post("/detect", json={"queries": ["red"], "item": item_id})):
        assert r.status_code == 409, (r.request.url, r.status_code, r.content[:200])
        assert "changed since it was indexed" in r.json()["detail"]
        assert b"PRIVATE" not in r.content and b"root:" not in r.content


@pytest.mark.parametrize("target", ["secret", "/etc/passwd"])
def test_a_file_swapped_for_a_link_is_never_served(tmp_path, target):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    if target == "/etc/passwd" and not Path(target).is_file():
        pytest.skip("no /etc/passwd here")
    with running_app(app_settings(tmp_path)) as client:
        ids = ids_by_name(client)
        assert client.get(f"/items/{ids['red.jpg']}/thumbnail").status_code == 200  # cached now
        victim = tmp_path / "photos" / "red.jpg"
        victim.unlink()
        victim.symlink_to(secret if target == "secret" else target)  # ln -sf TARGET red.jpg
        _refused(client, ids["red.jpg"])
        assert client.get(f"/items/{ids['blue.jpg']}/image").status_code == 200  # others unaffected


def test_a_replaced_file_is_refused_until_reindexed(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path)) as client:
        ids = ids_by_name(client)
        solid(tmp_path / "photos" / "green.jpg", "blue", size=(90, 70))  # new content in place
        _refused(client, ids["green.jpg"])
        job = client.post("/index", json={}).json()  # indexing again makes it servable
        from tests.test_api_support import wait_job

        assert wait_job(client, job["id"])["status"] == "done"
        r = client.get(f"/items/{ids['green.jpg']}/image")
        assert r.status_code == 200 and r.content == (tmp_path / "photos" / "green.jpg").read_bytes()


@pytest.mark.timeout(60)
def test_a_fifo_in_the_files_place_does_not_hang(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path)) as client:
        ids = ids_by_name(client)
        victim = tmp_path / "photos" / "yellow.jpg"
        victim.unlink()
        os.mkfifo(victim)
        _refused(client, ids["yellow.jpg"])


def test_a_photo_indexed_through_a_link_is_served(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    real = solid(tmp_path / "elsewhere" / "real.jpg", "red", size=(50, 40))
    (tmp_path / "photos" / "linked.jpg").symlink_to(real)
    with running_app(app_settings(tmp_path)) as client:
        item = ids_by_name(client)["linked.jpg"]
        r = client.get(f"/items/{item}/image")
        assert r.status_code == 200 and r.content == real.read_bytes()
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["content-length"] == str(real.stat().st_size)
        assert client.get(f"/items/{item}/thumbnail").status_code == 200
        # The link now leads to another photo: refused like any other swap.
        other = tmp_path / "elsewhere" / "other.jpg"
        shutil.copy(tmp_path / "photos" / "blue.jpg", other)
        (tmp_path / "photos" / "linked.jpg").unlink()
        (tmp_path / "photos" / "linked.jpg").symlink_to(other)
        _refused(client, item)
