"""The web app: the session's scores against the pipeline's, its errors as messages, and the
real ``comclip app`` driven in headless Chromium against ``comclip score --json``."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from comclip.errors import InputError

from .conftest import SHARED_DATA, run_cli_here

SANDBOX = "comclip/sandbox"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from comclip.app import AppSession
    from comclip.backbones import create_backbone

    return AppSession(create_backbone(SANDBOX, device="cpu"), figures_dir=tmp_path_factory.mktemp("figures"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, tuple[str, str]]:
    """A bundled sandbox example: its image file and its two captions (the true one first)."""
    from comclip.app.examples import sandbox_examples

    path, captions = sandbox_examples(tmp_path_factory.mktemp("examples"))[0]
    return Path(path), tuple(captions.split("\n"))


def test_session_scores_are_the_pipelines(session, scene):
    from comclip.pipeline import ComCLIP

    path, captions = scene
    scored = session.score(str(path), f"\n {captions[0]}\n\n{captions[1]} \n", weighting="softmax", subimage_fill="mean")
    assert scored.texts == list(captions)  # blank lines and edges dropped
    config = session.configure(weighting="softmax", subimage_fill="mean")
    assert (config.weighting, config.subimage_fill) == ("softmax", "mean")
    expected = ComCLIP(session.backbone, config).score_details([str(path)], list(captions))[0]
    assert [r.score for r in scored.results] == pytest.approx([r.score for r in expected], abs=1e-6)
    clip = session.backbone.similarity([str(path)], list(captions))[0]
    assert scored.clip == pytest.approx(clip.tolist(), abs=1e-6)
    assert len(scored.figures) == 2 and all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in scored.figures)
    assert scored.winners() == (
        scored.clip.index(max(scored.clip)),
        [r.score for r in scored.results].index(max(r.score for r in scored.results)),
    )


def test_session_defaults_are_the_models(session):
    """The page starts on the configuration `comclip score` would use for this model."""
    from comclip.config import PipelineConfig

    expected = PipelineConfig.layered(session.backbone.defaults)
    assert session.defaults() == {
        name: getattr(expected, name) for name in ("weighting", "subimage_fill", "score_mode", "grounder")
    }


def test_pipelines_are_built_once_and_share_their_grounder(session):
    first = session.pipeline(session.configure(weighting="sum", subimage_fill="black"))
    assert session.pipeline(session.configure(weighting="sum", subimage_fill="black")) is first
    other = session.pipeline(session.configure(weighting="softmax", subimage_fill="mean"))
    assert other is not first and other.grounder is first.grounder


@pytest.mark.parametrize(
    "image, captions, choices, message",
    [
        (None, "a dog", {}, "no image"),
        ("SCENE", "  \n\n ", {}, "no caption"),
        ("BAD", "a dog", {}, "not an image file"),
        ("SCENE", "a dog", {"weighting": "nope"}, "unknown weighting"),
    ],
)
def test_session_refuses_bad_input(session, scene, tmp_path, image, captions, choices, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    image = {"SCENE": str(scene[0]), "BAD": str(bad)}.get(image, image)
    with pytest.raises(InputError, match=message):
        session.score(image, captions, **choices)


def test_score_request_turns_every_error_into_a_message(session, scene, monkeypatch, caplog):
    from comclip.app.page import score_request

    message, preview, scores, *_ = score_request(session, None, "a dog", "sum", "black", "comclip", "clip")
    assert message.startswith("**Error:** no image") and preview is None and scores == ""

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(session, "score", broken)
    message, *_ = score_request(session, str(scene[0]), "a dog", "sum", "black", "comclip", "clip")
    assert "internal error (RuntimeError: boom)" in message
    assert "Traceback" in caplog.text  # the log keeps what the page leaves out


def test_tables_mark_the_winners_and_carry_every_part(session, scene):
    from comclip.app.tables import parses_html, scores_html, weights_html

    scored = session.score(str(scene[0]), "\n".join(scene[1]), draw=False)
    table = scores_html(scored)
    for method, values in (("clip", scored.clip), ("comclip", [r.score for r in scored.results])):
        cells = re.findall(rf'<td class="{method}" data-value="([^"]+)"( data-winner="true")?>', table)
        assert [float(v) for v, _ in cells] == values
        assert [bool(w) for _, w in cells] == [v == max(values) for v in values]
    weights = weights_html(scored)
    assert weights.count("<tr data-caption=") == sum(len(r.parts) for r in scored.results)
    for result in scored.results:
        for entity in result.graph.entities:
            assert entity.phrase in parses_html(scored)


def test_bundled_examples(tmp_path):
    from comclip.app import bundled_examples
    from comclip.app.examples import SANDBOX_EXAMPLES
    from comclip.imaging.files import load_image

    rows = bundled_examples(tmp_path, shared_data=tmp_path / "absent")
    assert len(rows) == len(SANDBOX_EXAMPLES)
    for path, captions in rows:
        assert Path(path).parent == tmp_path and load_image(path).image.size[0] > 0
        first, second = captions.split("\n")
        assert first and second and first != second


def test_bundled_examples_with_shared_data(tmp_path):
    from comclip.app import bundled_examples
    from comclip.app.examples import SANDBOX_EXAMPLES, SUGARCREPE_FILE, SUGARCREPE_TASKS

    from .conftest import shared_data

    shared_data(str(SUGARCREPE_FILE))
    rows = bundled_examples(tmp_path, shared_data=SHARED_DATA)
    assert len(rows) == len(SANDBOX_EXAMPLES) + len(SUGARCREPE_TASKS)
    assert all(Path(path).parent == tmp_path for path, _ in rows)  # copies: the page serves no shared folder


def test_build_page_offers_the_registries(session):
    from comclip.app.page import build_page
    from comclip.app.session import option_choices

    page = build_page(session, [])
    radios = {
        c.elem_id: c
        for c in page.blocks.values()
        if getattr(c, "elem_id", None) in {f"comclip-{name}" for name in option_choices()}
    }
    assert {k: [v for v, _ in c.choices] for k, c in radios.items()} == {f"comclip-{k}": v for k, v in option_choices().items()}


def test_cli_app_refuses_a_port_in_use():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli_here(["app", "--model", SANDBOX, "--port", port])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_app_stopped_by_sigterm_removes_its_temporary_folder(tmp_path):
    """``kill`` (SIGTERM, as systemd or docker stop send) stops the app as Ctrl-C does: the
    server closes, the process exits 0 and its temporary folder is gone, with the photos
    uploaded to it (Gradio's uploads are kept there, private, not in Gradio's shared folder).
    A file that is not an image gets comclip's own message."""
    import signal

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    port = _free_port()
    process = start_app(["--model", SANDBOX, "--port", port, "--no-cache"], TMPDIR=str(temporary))
    assert process.stderr is not None
    [work] = temporary.glob("comclip-app-*")  # the folder the app works in, while it serves
    assert work.stat().st_mode & 0o077 == 0  # private: no other local user reads it
    photo = tmp_path / "private-photo.png"
    Image.new("RGB", (64, 64), (10, 200, 10)).save(photo)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    client.predict(handle_file(str(photo)), "a green square", "comclip", api_name="/score")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    with pytest.raises(AppError, match="not an image"):  # comclip's own line, not Gradio's generic one
        client.predict(handle_file(str(not_an_image)), "a green square", "comclip", api_name="/score")
    uploads = [p for p in temporary.rglob("*") if p.name in (photo.name, not_an_image.name)]
    assert uploads and all(work in p.parents for p in uploads)  # in the private folder, nowhere else
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    log = process.stderr.read()
    assert "Traceback" not in log, log  # a user's mistake is not the server's: no traceback in its log
    left = [p.name for p in temporary.rglob("*")]
    assert not [n for n in left if n.startswith("comclip-app-") or n in (photo.name, not_an_image.name, "gradio")], left


# --- the real app in a real browser ----------------------------------------------------------
def _browser() -> tuple[str, str]:
    """Debian's chromium and chromedriver, or a skip saying how to install them."""
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip(
            "no browser: install Debian's chromium and chromium-driver (apt-get install chromium "
            "chromium-driver); .ci/run does so where it can"
        )
    return binary, driver


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """``comclip app`` on a free local port, as a user starts it; its address."""
    port = _free_port()
    cache = tmp_path_factory.mktemp("app-cache") / "embeddings.sqlite"
    process = start_app(["--model", SANDBOX, "--port", port, "--cache", cache])
    yield f"http://127.0.0.1:{port}/", process
    process.terminate()
    process.wait(timeout=30)


def start_app(args: list, **environment: str) -> subprocess.Popen:
    """``comclip app ARGS`` as a user starts it (with ``environment`` added to the
    environment), once it says it is serving."""
    process = subprocess.Popen(
        [sys.executable, "-m", "comclip", "app", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **environment},
    )
    started = time.monotonic()
    for line in process.stderr:
        if "serving on" in line:
            return process
        assert time.monotonic() - started < 180, "comclip app did not start in 3 minutes"
    pytest.fail(f"comclip app exited with {process.wait()} before serving")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1700"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


class Page:
    """The app's page in the browser, by the element ids the app sets."""

    def __init__(self, browser, url: str):
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser, self.wait = browser, WebDriverWait(browser, 120)
        browser.get(url)
        self.wait.until(lambda b: self.find("#comclip-image input[type=file]"))

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.browser.find_elements(By.CSS_SELECTOR, css)

    def upload(self, path: Path) -> None:
        self.find("#comclip-image input[type=file]")[0].send_keys(str(path))
        self.wait.until(lambda b: path.name in "".join(self.find("#comclip-image")[0].text.split()))

    def type_captions(self, captions) -> None:
        self.find("#comclip-captions textarea")[0].send_keys("\n".join(captions))

    def choose(self, option: str, value: str) -> None:
        label = next(el for el in self.find(f"#comclip-{option} label") if el.text.strip() == value)
        label.click()
        self.wait.until(lambda b: self.find(f'#comclip-{option} input[value="{value}"]')[0].is_selected())

    def score(self, expect: str) -> str:
        """Press Score and wait for the message to say ``expect``; returns the message."""
        self.find("#comclip-score")[0].click()
        self.wait.until(lambda b: expect in self.message())
        return self.message()

    def message(self) -> str:
        return " ".join(self.find("#comclip-message")[0].text.split())

    def scores(self) -> list[dict]:
        rows = []
        for row in self.find("#comclip-scores tbody tr"):
            cells = {cell.get_attribute("class"): cell for cell in row.find_elements("css selector", "td")}
            rows.append(
                {
                    "text": cells["caption"].text,
                    "clip": float(cells["clip"].get_attribute("data-value")),
                    "comclip": float(cells["comclip"].get_attribute("data-value")),
                    "winners": [m for m in ("clip", "comclip") if cells[m].get_attribute("data-winner")],
                }
            )
        return rows


def test_browser_errors_are_messages_and_the_server_keeps_serving(app_server, browser, tmp_path):
    url, process = app_server
    page = Page(browser, url)
    assert "no image" in page.score(expect="Error")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a picture")
    page.upload(bad)
    page.type_captions(["a red circle", "a blue square"])
    assert "not an image file" in page.score(expect="not an image file") and "bad.png" in page.message()
    assert not page.find("#comclip-scores table")
    assert process.poll() is None  # still serving


def test_browser_scores_match_the_cli(app_server, browser, scene, tmp_path):
    url, process = app_server
    path, captions = scene
    page = Page(browser, url)
    page.upload(path)
    assert "no caption" in page.score(expect="Error")
    page.type_captions(captions)
    page.choose("weighting", "softmax")
    message = page.score(expect="prefer")
    shown = page.scores()

    cli = run_cli_here(
        ["score", path, *captions, "--method", "clip,comclip", "--model", SANDBOX, "--weighting", "softmax", "--json"]
    )
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)["results"]
    assert [row["text"] for row in shown] == [row["text"] for row in expected] == list(captions)
    for got, want in zip(shown, expected):
        assert got["clip"] == pytest.approx(want["clip"], abs=1e-5)
        assert got["comclip"] == pytest.approx(want["comclip"], abs=1e-5)
    best = {m: max(range(len(expected)), key=lambda n: expected[n][m]) for m in ("clip", "comclip")}
    assert [row["winners"] for row in shown] == [[m for m in ("clip", "comclip") if best[m] == n] for n in range(2)]
    assert f"caption {best['comclip'] + 1}" in message

    page.wait.until(lambda b: len(page.find("#comclip-figures img")) >= 2)
    figure = page.find("#comclip-figures img")[0]
    page.wait.until(lambda b: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", figure))
    assert page.find("#comclip-parses .comclip-parse") and page.find("#comclip-weights tbody tr")
    _screenshot(browser, tmp_path / "app.png")
    assert process.poll() is None


def test_browser_bundled_example(app_server, browser):
    """Picking an example fills the image and the captions; Score works on it."""
    url, process = app_server
    page = Page(browser, url)
    page.wait.until(lambda b: any("sandbox-binding" in row.text for row in page.find("table tbody tr")))
    next(row for row in page.find("table tbody tr") if "sandbox-binding" in row.text).click()
    page.wait.until(lambda b: "sandbox-binding" in "".join(page.find("#comclip-image")[0].text.split()))
    page.wait.until(lambda b: page.find("#comclip-captions textarea")[0].get_attribute("value").count("\n") == 1)
    assert "prefer" in page.score(expect="prefer") and len(page.scores()) == 2
    assert process.poll() is None


def _screenshot(browser, path: Path) -> None:
    """Save the page under the test's folder; with COMCLIP_APP_SCREENSHOT=FILE, also a small copy
    there (how the README's picture is made)."""
    from PIL import Image

    browser.save_screenshot(str(path))
    assert Image.open(path).size[0] > 0
    target = os.environ.get("COMCLIP_APP_SCREENSHOT")
    if target:
        shot = Image.open(path).convert("RGB")
        shot.thumbnail((900, 1400))
        shot.quantize(colors=128).save(target, optimize=True)


def test_cli_app_without_gradio_says_which_extra(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the extra were not installed
    code, out, err = cli("app", "--model", SANDBOX)
    assert code == 1 and "pip install 'comclip[app]'" in err and "Traceback" not in err


def test_browser_method_choice_sets_the_options_and_scores_as_the_cli(app_server, browser, scene):
    """Choosing comclip-plus moves the page's options to its settings; Score then gives what
    `comclip score --method comclip-plus` gives."""
    url, _ = app_server
    path, captions = scene
    page = Page(browser, url)
    page.upload(path)
    page.type_captions(captions)
    page.choose("method", "comclip-plus")
    page.wait.until(lambda b: page.find('#comclip-subimage_fill input[value="background"]')[0].is_selected())
    page.wait.until(lambda b: page.find('#comclip-score_mode input[value="evidence"]')[0].is_selected())
    page.score(expect="prefer")
    shown = page.scores()
    cli = run_cli_here(["score", path, *captions, "--method", "clip,comclip-plus", "--model", SANDBOX, "--json"])
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)["results"]
    for got, want in zip(shown, expected):
        assert got["comclip"] == pytest.approx(want["comclip-plus"], abs=1e-5)


def test_the_api_endpoint_score_returns_what_comclip_score_json_prints(app_server, scene):
    """``gradio_client`` calls ``/score`` with an image and captions: the same JSON as
    ``comclip score --method clip,comclip --json`` (the image named by the server's copy); a
    user's error comes back as the client's exception with the message."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _ = app_server
    path, captions = scene
    client = Client(url, verbose=False)
    got = client.predict(handle_file(str(path)), "\n".join(captions), "comclip", api_name="/score")
    cli = run_cli_here(["score", path, *captions, "--method", "clip,comclip", "--model", SANDBOX, "--json"])
    expected = json.loads(cli.stdout)
    assert got["model"] == expected["model"] and [r["text"] for r in got["results"]] == list(captions)
    for mine, theirs in zip(got["results"], expected["results"]):
        assert set(mine) == set(theirs) == {"text", "clip", "clip_logit", "comclip"}
        assert all(mine[k] == pytest.approx(theirs[k], abs=1e-5) for k in ("clip", "clip_logit", "comclip"))
    with pytest.raises(AppError, match="caption"):
        client.predict(handle_file(str(path)), "   ", "comclip", api_name="/score")
