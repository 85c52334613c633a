"""Debian's Chromium, driven by Playwright, uses the web UI like a person would."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import MODEL, NO_EOS, LiveServer

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium via Playwright; skipped without it, except in CI where it must be there."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


def _ban_end_of_text(route: Any) -> None:
    # The tiny model's random weights end a text at random; without end-of-text there is
    # always a running stream to stop.
    body = json.loads(route.request.post_data or "{}")
    route.continue_(post_data=json.dumps({**body, "logit_bias": NO_EOS}))


def _wait_for_text(page: Any, selector: str, length: int, timeout: float = 30.0) -> None:
    # Polling from here: the page's CSP forbids the eval that wait_for_function needs.
    deadline = time.monotonic() + timeout
    while len(page.inner_text(selector)) <= length:
        assert time.monotonic() < deadline, f"{selector} stayed shorter than {length}"
        time.sleep(0.05)


def _running(server: LiveServer) -> int:
    with server.http() as http:
        runtime = http.get("/api/status").json()["runtime"]
    return int(runtime.get(MODEL, {}).get("requests_running", 0))


def test_web_ui_loads_a_model_streams_text_and_stops(server: LiveServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(server.sign_in_url)
    assert page.url == server.base_url  # signed in; the token is gone from the address bar
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#model-select", MODEL)
    option = page.locator(f"#model-select option[value={MODEL}]").inner_text()
    assert "500 KB" in option and "RAM 0.1–0.2 GB" in option

    page.click("#load-btn")
    page.wait_for_selector("#progress[data-state=done]", state="attached", timeout=30_000)
    assert page.eval_on_selector("#progress", "el => el.value") == 1
    assert "ready" in page.inner_text("#progress-text")

    page.route("**/v1/chat/completions", _ban_end_of_text)
    page.fill("#prompt", "Tell me a long story")
    page.fill("#max-tokens", "1900")
    page.click("#send-btn")
    _wait_for_text(page, "#output", 40)
    assert page.is_enabled("#stop-btn") and not page.is_enabled("#send-btn")
    assert float(page.inner_text("#tps")) > 0
    page.click("#stop-btn")
    stopped = time.monotonic()
    page.wait_for_selector("#output[data-result=stopped]")
    text = page.inner_text("#output")
    assert "stopped after" in page.inner_text("#gen-status")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-ui.png"), full_page=True)
    while _running(server) and time.monotonic() - stopped < 1.0:
        time.sleep(0.05)
    assert _running(server) == 0  # the stop freed the slot
    time.sleep(0.3)
    assert page.inner_text("#output") == text  # nothing arrives after Stop
    assert page.is_hidden("#error")
    assert not errors


def test_web_ui_shows_clear_error_banners(server: LiveServer, browser: Any) -> None:
    page = browser.new_page()
    page.goto(server.sign_in_url)
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#model-select", MODEL)
    page.click("#send-btn")
    assert "Type a prompt first" in page.inner_text("#error")
    page.fill("#prompt", "hello world " * 3000)
    page.click("#send-btn")
    page.wait_for_selector("#output[data-result=error]", timeout=30_000)
    assert "context window" in page.inner_text("#error")
    assert page.is_visible("#error")
    page.click("#error-close")
    assert page.is_hidden("#error")


def test_web_ui_without_sign_in_explains_how_to_get_in(server: LiveServer,
                                                       browser: Any) -> None:
    page = browser.new_page()
    response = page.goto(server.base_url)
    assert response is not None and response.status == 401
    assert "localloom serve" in page.inner_text("body")
