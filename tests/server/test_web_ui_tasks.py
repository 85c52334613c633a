"""Chromium runs a task from the web UI, saves it, and finds it in the history panel."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import MODEL, LiveServer, chromium

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TEXT = ("Glaciers in Patagonia are retreating quickly. Meltwater lakes grow each summer "
        "and the ice front breaks off into them.")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium via Playwright; skipped without it, except in CI where it must be there."""
    with chromium() as launched:
        yield launched


def _fixed_seed(route: Any) -> None:
    # The tiny model's random weights may end a text at once; this seed gives a non-empty one.
    body = json.loads(route.request.post_data or "{}")
    route.continue_(post_data=json.dumps({**body, "seed": 7}))


def _wait_for(page: Any, selector: str, predicate: Any, timeout: float = 30.0) -> str:
    # Polling from here: the page's CSP forbids the eval that wait_for_function needs.
    deadline = time.monotonic() + timeout
    while not predicate(text := page.inner_text(selector)):
        assert time.monotonic() < deadline, f"{selector} never matched: {text!r}"
        time.sleep(0.05)
    return str(text)


def test_web_ui_runs_a_task_saves_it_and_finds_it_in_the_history(server: LiveServer,
                                                                 browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.sign_in_url)
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#model-select", MODEL)
    page.route("**/api/tasks/**", _fixed_seed)

    page.fill("#prompt", TEXT)
    page.fill("#max-tokens", "24")
    # Plain text: the page shows the answer as saved (markdown would render `_x_` as x).
    page.wait_for_selector("#task-options[data-ready=true]", state="attached")
    page.select_option("#task-options-for", "summarize")
    page.select_option("#opt-summarize-format", "plain-text")
    page.check("#save-check")
    page.click(".task-btn[data-task=summarize]")
    page.wait_for_selector("#output[data-result=complete]", timeout=60_000)
    answer = page.inner_text("#output").strip()
    assert answer
    status = page.inner_text("#gen-status")
    assert "summarize done" in status and "saved as" in status
    saved_prefix = status.rsplit("saved as ", 1)[1].strip()

    page.click("#history-toggle")
    page.wait_for_selector("#history-list[data-state=ready]")
    item = page.locator(f"#history-list li[data-id^='{saved_prefix}']")
    assert item.count() == 1
    assert answer in item.locator(".result").first.inner_text()

    page.fill("#history-search", "glaciers")
    page.click("#history-search-btn")
    _wait_for(page, "#history-count", lambda t: "for “glaciers”" in t)
    assert page.locator("#history-list li").count() == 1
    page.fill("#history-search", "zebra")
    page.press("#history-search", "Enter")
    _wait_for(page, "#history-count", lambda t: t.startswith("0 result"))
    assert page.locator("#history-list li").count() == 0
    page.fill("#history-search", "glaciers")
    page.press("#history-search", "Enter")
    _wait_for(page, "#history-count", lambda t: t.startswith("1 result"))
    assert page.get_attribute("#export-csv", "href") == "/api/history/export?format=csv"
    with page.expect_download() as download:  # fetched with the token, saved as a file
        page.click("#export-csv")
    saved = Path(download.value.path()).read_text(encoding="utf-8")
    assert saved.startswith("id,task,model") and "ice front breaks off" in saved

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-ui-tasks.png"), full_page=True)
    assert page.is_hidden("#error")
    assert not errors
