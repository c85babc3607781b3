"""The web page in a real headless Chromium (Debian's, driven by Playwright) against
``clipfind serve`` started as a subprocess on a free loopback port, with an API key so
the page's key prompt and keyed image loading are exercised too.

Skipped when Chromium or Playwright is absent (CI installs Chromium: see .ci/run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="Debian chromium is not installed"),
]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KEY = "browser-test-key"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):  # type: ignore[no-untyped-def]
    """A collection indexed with the tiny checkpoint, served by `clipfind serve`."""
    from clipfind.config import Settings
    from clipfind.encoder import ClipEncoder
    from clipfind.indexer import index_paths
    from clipfind.store.collection import Collection
    from tests.fakes import solid
    from tests.test_api_support import half_and_half

    tmp = tmp_path_factory.mktemp("web")
    photos = tmp / "photos"
    for colour in ("red", "green", "blue", "yellow"):
        solid(photos / f"{colour}.jpg", colour, size=(64, 48))
    half_and_half(photos / "half.png")
    spec = f"local-dir:{tiny_checkpoint}"
    collection = Collection(Settings(data_dir=tmp / "data", model=spec))
    index_paths(collection, ClipEncoder(spec, device="cpu"), [photos])
    collection.close()
    env = {**os.environ, "CLIPFIND_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-c",
        "import sys; from api.cli import main; sys.exit(main())",
        "serve",
        "--port",
        "0",
        "--json",
        "--data-dir",
        str(tmp / "data"),
        "--root",
        str(photos),
        "--device",
        "cpu",
    ]
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=Path(__file__).resolve().parents[1]
    )
    try:
        line = proc.stdout.readline()  # one JSON document once the server listens
        if not line:
            pytest.fail(f"clipfind serve did not start:\n{(tmp / 'serve.log').read_text()}")
        yield json.loads(line)["url"], photos
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):  # type: ignore[no-untyped-def]
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1200, "height": 800})
        pg.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(server[0] + "/")
        # The server has a key: the page asks for it once and keeps it.
        pg.wait_for_selector("#key-dialog[open]")
        pg.fill("#key-input", KEY)
        pg.click("#key-form button[value=ok]")
        pg.wait_for_function("document.getElementById('stats').textContent.includes('5 photos')")
        yield pg
        browser.close()
        assert not errors, errors


def card_ids(pg) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(x) for x in pg.eval_on_selector_all("#grid .card", "els => els.map(e => e.dataset.id)")]


def wait_loaded_thumbs(pg, selector: str = "#grid") -> None:  # type: ignore[no-untyped-def]
    pg.wait_for_function(
        f"""() => {{ const imgs = [...document.querySelectorAll('{selector} .card img')];
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }}"""
    )


def test_type_a_query_and_see_thumbnails(page):  # type: ignore[no-untyped-def]
    page.fill("#q", "a red photo")
    page.press("#q", "Enter")
    wait_loaded_thumbs(page)
    assert len(card_ids(page)) == 5
    assert "results for a red photo" in page.inner_text("#search-status")
    texts = page.eval_on_selector_all("#grid .score", "els => els.map(e => e.textContent)")
    scores = [float(s) for s in texts]
    assert scores == sorted(scores, reverse=True)
    assert "q=a+red+photo" in page.url


def test_open_one_then_more_like_this(page):  # type: ignore[no-untyped-def]
    first = card_ids(page)[1]
    page.click(f"#grid .card[data-id='{first}']")
    page.wait_for_selector("#lightbox[open]")
    page.wait_for_function("document.querySelector('#lb-meta').textContent.includes('#')")
    assert f"#{first}" in page.inner_text("#lb-meta")
    page.wait_for_function("document.getElementById('lb-img').naturalWidth > 0")
    page.click("#lb-more")
    page.wait_for_function(f"document.querySelector('#grid .card')?.dataset.id === '{first}'")
    assert page.inner_text("#grid .card .score") == "1.000"  # an item is most like itself
    assert f"item={first}" in page.url


def test_search_by_example_image(page, server):  # type: ignore[no-untyped-def]
    _, photos = server
    page.set_input_files("#file-input", str(photos / "half.png"))
    page.wait_for_selector("#example:not([hidden])")
    page.wait_for_function("document.querySelector('#search-status').textContent.includes('uploaded image')")
    wait_loaded_thumbs(page)
    top = page.inner_text("#grid .card .name")
    assert top == "half.png" and page.inner_text("#grid .card .score") == "1.000"


def test_detect_view_draws_boxes(page):  # type: ignore[no-untyped-def]
    page.click("#grid .card")
    page.wait_for_selector("#lightbox[open]")
    page.click("#lb-detect")
    page.wait_for_selector("#view-detect:not([hidden])")
    page.fill("#detect-threshold", "0")  # a random model: accept every box it proposes
    page.fill("#detect-queries", "a red square, a blue square")
    page.click("#detect-run")
    page.wait_for_selector(".det-box")
    frame = page.locator("#detect-img").bounding_box()
    boxes = page.locator(".det-box")
    assert boxes.count() >= 1 and page.locator("#detections li").count() == boxes.count()
    for i in range(boxes.count()):
        box = boxes.nth(i).bounding_box()
        assert frame["x"] - 1 <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
        assert frame["y"] - 1 <= box["y"] and box["y"] + box["height"] <= frame["y"] + frame["height"] + 1
    assert "box" in page.inner_text("#detect-status")


def test_label_view_counts_and_browse(page):  # type: ignore[no-untyped-def]
    page.click(".tabs button[data-view=labels]")
    page.click(".new-set summary")
    page.fill("#ls-name", "colours")
    page.fill("#ls-labels", "red, green, blue")
    page.click("#label-form button[type=submit]")
    page.wait_for_selector("#label-counts .chip")
    counts = page.eval_on_selector_all("#label-counts .chip b", "els => els.map(e => +e.textContent)")
    meta = page.inner_text("#set-meta")  # "3 labels · N photos labelled · M none of these"
    labelled, none = (
        int(re.search(rf"(\d+) {what}", meta).group(1)) for what in ("photos labelled", "none of these")
    )
    assert len(counts) == 3 and sum(counts) == labelled and labelled + none == 5
    if labelled:  # a random model may call everything "none of these"
        chip = page.locator("#label-counts .chip[aria-pressed=true]")
        wait_loaded_thumbs(page, "#label-grid")
        assert page.locator("#label-grid .card").count() == int(chip.locator("b").inner_text())
    deadline = time.monotonic() + 10  # the search filter offers the new labels
    while page.locator("#f-label option").count() < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert page.locator("#f-label option").count() == 4


def wait_status(pg, text: str) -> None:  # type: ignore[no-untyped-def]
    pg.wait_for_function(f"document.getElementById('search-status').textContent.includes({text!r})")


def test_reload_and_history_keep_the_whole_search_state(page):  # type: ignore[no-untyped-def]
    page.click(".tabs button[data-view=search]")
    if page.locator("#example").is_visible():  # an uploaded example cannot live in a URL
        page.click("#example-clear")
    page.fill("#q", "a photo")
    page.fill("#not", "blue")
    if page.locator("#filters").is_hidden():
        page.click("#filters-btn")
    page.fill("#f-path", "*.jpg")  # the four JPEGs, not half.png
    page.press("#q", "Enter")
    wait_status(page, "not blue")
    wait_loaded_thumbs(page)
    ids = card_ids(page)
    assert len(ids) == 4
    for key in ("q=a+photo", "not=blue", "path=*.jpg"):
        assert key in page.url.replace("%2A", "*")

    page.reload()
    wait_status(page, "not blue")
    wait_loaded_thumbs(page)
    assert (page.input_value("#q"), page.input_value("#not"), page.input_value("#f-path")) == (
        "a photo",
        "blue",
        "*.jpg",
    )
    assert page.locator("#filters").is_visible() and card_ids(page) == ids

    page.click(".tabs button[data-view=labels]")  # a tab and its set survive a reload
    page.wait_for_selector("#label-counts .chip")
    page.select_option("#set-select", "colours")
    assert "view=labels" in page.url and "set=colours" in page.url
    page.reload()
    page.wait_for_selector("#view-labels:not([hidden]) #label-counts .chip")
    assert page.input_value("#set-select") == "colours"
    assert page.locator("#view-search").is_hidden()

    page.go_back()  # back to the search, its filters and its results
    page.wait_for_selector("#view-search:not([hidden])")
    wait_status(page, "not blue")
    wait_loaded_thumbs(page)
    assert page.input_value("#not") == "blue" and card_ids(page) == ids
    page.go_forward()
    page.wait_for_selector("#view-labels:not([hidden])")


def test_reload_keeps_the_detect_view(page):  # type: ignore[no-untyped-def]
    page.click(".tabs button[data-view=search]")
    wait_loaded_thumbs(page)
    first = card_ids(page)[0]
    page.click(f"#grid .card[data-id='{first}']")
    page.wait_for_selector("#lightbox[open]")
    page.click("#lb-detect")
    page.wait_for_selector("#view-detect:not([hidden])")
    page.fill("#detect-threshold", "0")
    page.fill("#detect-queries", "a red square")
    page.click("#detect-run")  # the lightbox's detect with the old queries may still run
    page.wait_for_function("/\\d+ box/.test(document.getElementById('detect-status').textContent)")
    boxes = page.locator(".det-box").count()
    assert boxes >= 1 and {
        page.locator(".det-box").nth(i).get_attribute("data-label") for i in range(boxes)
    } == {"a red square"}
    assert f"detect={first}" in page.url and "view=detect" in page.url
    page.reload()
    page.wait_for_selector("#view-detect:not([hidden])")
    page.wait_for_function("/\\d+ box/.test(document.getElementById('detect-status').textContent)")
    assert page.input_value("#detect-queries") == "a red square"
    assert page.input_value("#detect-threshold") == "0"
    assert page.locator(".det-box").count() == boxes
