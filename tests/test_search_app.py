"""``comclip app --index DIR`` in a real browser: the Search tab shows CLIP's order beside
comclip-plus's, as ``comclip search`` gives them, and ``/search`` answers ``gradio_client``."""

from __future__ import annotations

import pytest

from comclip.search import Index
from comclip.search.benchmark import render_gallery

from .test_app import _browser, _free_port, start_app

QUERY = "a red circle to the left of a blue square"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Index:
    folder = tmp_path_factory.mktemp("app-index")
    render_gallery(["order-swap"], seed=5, n=4, folder=folder / "pictures")
    return Index.build([folder / "pictures"], folder / "index", "comclip/sandbox-bow", methods=["clip", "comclip-plus"])


@pytest.fixture(scope="module")
def search_server(index, tmp_path_factory):
    binary, driver = _browser()
    port = _free_port()
    cache = tmp_path_factory.mktemp("app-cache") / "embeddings.sqlite"
    process = start_app(["--index", index.folder, "--port", port, "--cache", cache])
    yield f"http://127.0.0.1:{port}/", (binary, driver)
    process.terminate()
    process.wait(timeout=30)


def test_browser_search_tab_matches_the_library(index, search_server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, (binary, driver) = search_server
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1700"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        wait = WebDriverWait(browser, 120)
        browser.get(url)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "button[role=tab]"))
        next(t for t in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text.strip() == "Search").click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#comclip-query textarea, #comclip-query input"))
        browser.find_elements(By.CSS_SELECTOR, "#comclip-query textarea, #comclip-query input")[0].send_keys(QUERY)
        browser.find_element(By.CSS_SELECTOR, "#comclip-search").click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#comclip-hits tbody tr"))
        rows = [
            (
                r.get_attribute("data-method"),
                int(r.get_attribute("data-rank")),
                r.get_attribute("data-image"),
                float(r.get_attribute("data-score")),
            )
            for r in browser.find_elements(By.CSS_SELECTOR, "#comclip-hits tbody tr")
        ]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#comclip-hits-plus img")) == 8
    finally:
        browser.quit()
    expected = index.search(QUERY, top=8, candidates=100, method=["clip", "comclip-plus"])
    assert [(m, k, i) for m, k, i, _ in rows] == [(r.method, h.rank, h.image) for r in expected for h in r.hits]
    assert [s for *_, s in rows] == pytest.approx([h.score for r in expected for h in r.hits], abs=1e-4)


def test_search_endpoint_answers_gradio_client(index, search_server):
    from gradio_client import Client

    url, _ = search_server
    got = Client(url, verbose=False).predict(QUERY, 3, "clip,comclip-plus", api_name="/search")
    expected = index.search(QUERY, top=3, candidates=100, method=["clip", "comclip-plus"])
    assert [r["method"] for r in got] == ["clip", "comclip-plus"]
    assert [[h["image"] for h in r["results"]] for r in got] == [[h.image for h in r.hits] for r in expected]
