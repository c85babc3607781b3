"""What one request may cost: texts are capped before the tokenizer sees them, prompts
(labels x templates) per request are capped, heavy requests queue through a bounded
gate (503 + Retry-After when it is full, /health still answers), uploads have their own
pixel cap checked from the header, and bodies the JSON parser takes but strict JSON
cannot echo (NaN, Infinity, 1e999, bytes that are not UTF-8) are 422 with a message."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.fakes import ColourEncoder
from tests.live_server import live_server, request
from tests.test_api_support import app_settings, bomb_png, make_photos, running_app


class RecordingEncoder(ColourEncoder):
    """Remembers the longest text it was asked to encode."""

    longest = 0

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        type(self).longest = max([type(self).longest, *map(len, texts)])
        return super().encode_texts(texts)


@pytest.fixture(scope="module")
def client(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("limits")
    make_photos(tmp / "photos")
    with running_app(app_settings(tmp), RecordingEncoder()) as c:
        yield c


LONG = "dog " * 60 + "x" * 20_000


@pytest.mark.parametrize("method, url, body", [
    ("GET", "/search", {"q": LONG}),
    ("GET", "/search", {"q": "a cat + " + "b" * 300}),  # one term too long inside q
    ("GET", "/search", {"not": LONG, "q": "red"}),
    ("POST", "/search", {"q": "red", "not": [LONG]}),
    ("POST", "/classify", {"labels": ["red", LONG], "item": 1}),
    ("POST", "/classify", {"labels": ["red"], "templates": [LONG + "{}"], "item": 1}),
    ("POST", "/detect", {"queries": [LONG], "item": 1}),
    ("POST", "/labels/colours", {"labels": [LONG]}),
    ("POST", "/labels/colours", {"labels": ["red"], "templates": ["{} " + "y" * 300]}),
])
def test_long_texts_are_422_before_encoding(client, method, url, body):  # type: ignore[no-untyped-def]
    RecordingEncoder.longest = 0
    r = client.get(url, params=body) if method == "GET" else client.post(url, json=body)
    assert r.status_code == 422, (url, r.status_code, r.text[:300])
    assert "200 characters" in r.text or "1000 characters" in r.text
    assert RecordingEncoder.longest <= 200  # nothing long reached the tokenizer


def test_too_many_prompts_are_422(client):  # type: ignore[no-untyped-def]
    labels = [f"thing {i}" for i in range(60)]  # 60 x imagenet's 80 templates = 4800
    for url, extra in (("/classify", {"item": 1}), ("/labels/many", {})):
        r = client.post(url, json={"labels": labels, "templates": ["imagenet"], **extra})
        assert r.status_code == 422 and "4800 prompts" in r.json()["detail"], r.text
        own = [f"{{}} v{i}" for i in range(5)]  # 1000 labels x 5 own templates = 5000
        r = client.post(url, json={"labels": [f"l{i}" for i in range(1000)], "templates": own, **extra})
        assert r.status_code == 422 and "5000 prompts" in r.json()["detail"], r.text
    ok = client.post("/classify", json={"labels": labels[:40], "templates": ["imagenet"], "item": 1})
    assert ok.status_code == 200  # 3,200 prompts: within the cap


@pytest.mark.parametrize("url, body", [
    ("/search", b'{"q":"dog","image_weight":NaN}'),
    ("/search", b'{"q":"dog","image_weight":Infinity}'),
    ("/search", b'{"q":"dog","min_score":-Infinity}'),
    ("/search", b'{"q":"dog","image_weight":1e999}'),
    ("/search", b'{"q":"\xff\xfe dog"}'),
    ("/classify", b'{"labels":["a"],"item":1,"threshold":NaN}'),
    ("/classify", b'{"labels":["\xc3\x28"],"item":1}'),
    ("/detect", b'{"queries":["a"],"item":1,"threshold":1e999}'),
    ("/detect", b'{"queries":["\xff"],"item":1}'),
    ("/labels/x", b'{"labels":["a"],"threshold":NaN}'),
    ("/labels/x", b'{"labels":["a"],"threshold":Infinity}'),
    ("/labels/x", b'{"labels":["\xff"]}'),
    ("/index", b'{"root":"\xff"}'),
    ("/index", b'{"root":NaN}'),
])
def test_bad_json_numbers_and_bytes_are_422(client, url, body):  # type: ignore[no-untyped-def]
    r = client.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, (url, body, r.status_code, r.text[:200])
    detail = r.json()["detail"]  # strict JSON: parsed without NaN or Infinity
    json.dumps(r.json(), allow_nan=False)
    message = " ".join(d["msg"] for d in detail)
    assert "finite number" in message or "not valid UTF-8 JSON" in message, detail


def test_uploads_have_their_own_pixel_cap(tmp_path):  # type: ignore[no-untyped-def]
    """12000x12000 in a few KB passes the 150 Mpx cap for indexed files; uploads stop at
    40 Mpx, read from the header before a pixel is decoded."""
    make_photos(tmp_path / "photos")
    big = bomb_png(12_000)
    with running_app(app_settings(tmp_path), index=False) as c:
        for url, fields in (("/search", {}), ("/classify", {"labels": "red"}),
                            ("/detect", {"queries": "red"})):
            r = c.post(url, files={"image": ("big.png", big, "image/png")}, data=fields)
            assert r.status_code == 422, (url, r.text[:200])
            assert "40,000,000-pixel cap for uploads" in r.json()["detail"]
    with running_app(app_settings(tmp_path, max_upload_pixels=100), index=False) as c:
        r = c.post("/search", files={"image": ("small.png", bomb_png(20), "image/png")})
        assert r.status_code == 422 and "100-pixel cap for uploads" in r.json()["detail"]


class BlockingEncoder(ColourEncoder):
    """Text encoding waits until released: a heavy request that holds its slot."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode_texts(self, texts):  # type: ignore[no-untyped-def]
        if "block" in texts:
            self.entered.set()
            assert self.release.wait(60)
        return super().encode_texts(texts)


@pytest.mark.timeout(120)
def test_heavy_requests_beyond_the_queue_get_503_and_health_answers(tmp_path):  # type: ignore[no-untyped-def]
    make_photos(tmp_path / "photos")
    with running_app(app_settings(tmp_path)):
        pass
    encoder = BlockingEncoder()
    settings = app_settings(tmp_path, heavy_slots=1, heavy_queue=1)
    with live_server(settings, encoder) as address:
        results: list[int] = []

        def search(q: str) -> None:
            results.append(request(address, "GET", f"/search?q={q}")[0])

        holder = threading.Thread(target=search, args=("block",))
        holder.start()
        assert encoder.entered.wait(30)  # the one slot is taken
        waiter = threading.Thread(target=search, args=("red",))
        waiter.start()  # waits in the queue (its one place)
        gate = address.app.state.heavy
        for _ in range(3000):
            if gate.waiting == 1:
                break
            time.sleep(0.01)
        status, headers, body = request(address, "GET", "/search?q=green")
        assert status == 503, status
        assert headers["retry-after"].isdigit() and "busy" in json.loads(body)["detail"]
        assert request(address, "POST", "/classify", body=b'{"labels":["a"],"item":1}',
                       headers={"Content-Type": "application/json"})[0] == 503
        assert request(address, "GET", "/health")[0] == 200  # never waits for a slot
        assert request(address, "GET", "/items/1")[0] == 200  # metadata is not heavy
        encoder.release.set()
        holder.join(60)
        waiter.join(60)
        assert results == [200, 200]
        assert request(address, "GET", "/search?q=green")[0] == 200
