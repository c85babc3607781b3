"""Index jobs over HTTP, searches while a job writes, the real open_clip path (tiny
random checkpoint) and startup failures."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from clipfind.api.http import create_app
from clipfind.config import Settings
from clipfind.errors import ModelLoadError, ModelMismatchError
from tests.fakes import ColourEncoder, solid
from tests.test_api_support import app_settings, make_photos, running_app, wait_job


class SlowColourEncoder(ColourEncoder):
    """Takes a little time per batch, so an index run spans many searches."""

    def encode_pixels(self, pixels):  # type: ignore[no-untyped-def]
        time.sleep(0.01)
        return super().encode_pixels(pixels)


def test_index_job_lifecycle(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path), index=False) as client:
        assert [r["name"] for r in client.get("/roots").json()] == ["photos"]
        job = client.post("/index", json={"root": "photos"})
        assert job.status_code == 202 and job.json()["roots"] == ["photos"]
        done = wait_job(client, job.json()["id"])
        assert done["status"] == "done" and done["summary"]["added"] == 7
        assert done["summary"]["skipped"] == 1 and done["done"] == done["total"] == 8
        solid(tmp_path / "photos" / "later" / "black.png", "black")
        (tmp_path / "photos" / "yellow.jpg").unlink()
        again = wait_job(client, client.post("/index", json={}).json()["id"])
        assert again["summary"]["added"] == 1 and again["summary"]["removed"] == 1
        names = [h["name"] for h in client.get("/search", params={"q": "black", "k": 50}).json()["results"]]
        assert names[0] == "black.png" and "yellow.jpg" not in names
        assert [j["id"] for j in client.get("/jobs").json()] == [again["id"], done["id"]]
        assert client.get("/jobs/nope").status_code == 404


def test_a_failing_job_reports_why(tmp_path):  # type: ignore[no-untyped-def]
    settings = app_settings(tmp_path, roots=[tmp_path / "unmounted"])
    with running_app(settings, index=False) as client:
        job = wait_job(client, client.post("/index", json={}).json()["id"])
        assert job["status"] == "failed" and "does not exist" in job["error"]


def test_searches_stay_correct_while_an_index_job_writes(tmp_path):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    for i in range(160):
        solid(tmp_path / "photos" / f"p{i:03d}.png", tuple(int(v) for v in rng.integers(0, 256, 3)))
    solid(tmp_path / "photos" / "zz_red.png", "red")
    settings = app_settings(tmp_path, batch_size=4)
    errors: list[str] = []
    during = 0
    with running_app(settings, SlowColourEncoder(), index=False) as client:
        job_id = client.post("/index", json={}).json()["id"]

        def searcher() -> None:
            nonlocal during
            while client.get(f"/jobs/{job_id}").json()["status"] in ("queued", "running"):
                r = client.get("/search", params={"q": "red", "k": 5})
                if r.status_code != 200:
                    errors.append(r.text)
                    continue
                during += 1
                hits = r.json()["results"]
                if [h["score"] for h in hits] != sorted((h["score"] for h in hits), reverse=True):
                    errors.append(f"unsorted page {hits}")

        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert wait_job(client, job_id)["status"] == "done"
        final = client.get("/search", params={"q": "red", "k": 1}).json()["results"]
        assert final[0]["name"] == "zz_red.png"
        assert client.get("/info").json()["indexed"] == 161
    assert not errors, errors[:3]
    assert during >= 3  # searches really overlapped the job


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory, tiny_checkpoint):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("tiny")
    for colour in ("red", "green", "blue", "yellow"):
        solid(tmp / "photos" / f"{colour}.jpg", colour, size=(64, 48))
    settings = Settings(data_dir=tmp / "data", model=f"local-dir:{tiny_checkpoint}",
                        roots=[tmp / "photos"], batch_size=4, workers=1,
                        allowed_hosts=["testserver"])  # TestClient's Host
    with TestClient(create_app(settings)) as client:  # the real ClipEncoder, loaded in lifespan
        assert wait_job(client, client.post("/index", json={}).json()["id"])["status"] == "done"
        yield client, tmp


def test_real_model_search_by_item_and_by_upload(tiny_env):  # type: ignore[no-untyped-def]
    client, tmp = tiny_env
    info = client.get("/info").json()
    assert info["indexed"] == 4 and info["model"].startswith("local-dir:")
    hits = client.get("/search", params={"q": "a red photo", "k": 4}).json()["results"]
    assert len(hits) == 4 and all(-1 <= h["score"] <= 1 for h in hits)
    for hit in hits:
        same = client.get("/search", params={"item": hit["id"], "k": 1}).json()["results"][0]
        assert same["id"] == hit["id"] and same["score"] > 0.999
    # The upload path decodes like the indexer did: the same file finds itself.
    data = (tmp / "photos" / "green.jpg").read_bytes()
    r = client.post("/search", files={"image": ("g.jpg", data, "image/jpeg")}, data={"k": "1"})
    assert r.status_code == 200 and r.json()["results"][0]["name"] == "green.jpg"
    assert r.json()["results"][0]["score"] > 0.999


def test_real_model_classify_and_detect(tiny_env):  # type: ignore[no-untyped-def]
    client, _ = tiny_env
    r = client.post("/classify", json={"labels": ["a cat", "a dog", "a car"], "item": 1})
    assert r.status_code == 200 and abs(sum(s["score"] for s in r.json()["scores"]) - 1) < 1e-3
    r = client.post("/detect", json={"queries": ["a red square"], "item": 1, "threshold": 0})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["width"], doc["height"]) == (64, 48)
    for det in doc["detections"]:
        box = det["box"]
        assert 0 <= box["xmin"] < box["xmax"] <= 64 and 0 <= box["ymin"] < box["ymax"] <= 48


class OtherSpaceEncoder(ColourEncoder):
    spec = "another-model"

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        return -super().encode_texts(texts)


def test_startup_refuses_a_mismatched_or_missing_model(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    settings = app_settings(tmp_path)
    with running_app(settings):
        pass
    app = create_app(settings, lambda _s, _c: OtherSpaceEncoder())
    with pytest.raises(ModelMismatchError), TestClient(app):
        pass
    assert isinstance(app.state.startup_error, ModelMismatchError)
    missing = Settings(data_dir=tmp_path / "other", model=f"local-dir:{tmp_path / 'nothing'}")
    with pytest.raises(ModelLoadError), TestClient(create_app(missing)):
        pass
