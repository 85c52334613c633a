"""Task options in the web UI: controls built from `GET /api/tasks` (a user task's options
too), the chosen values sent with the task, the answer keeping the option's limit, and
markdown answers rendered as DOM nodes. Real Chromium, a real server on the tiny model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import MODEL, LiveServer, chromium, start_server

pytestmark = pytest.mark.browser

TEXT = ("Glaciers in Patagonia are retreating quickly. Meltwater lakes grow each summer "
        "and the ice front breaks off into them. Scientists measure the loss from space.")
FACTS_TASK = '''
[[task]]
name = "facts"
description = "Facts from the text"
[task.options.size]
choices = ["one", "three"]
default = "one"
description = "How many facts"
phrases.en = { one = "The most important fact", three = "Three facts" }
limits.one = { max_items = 1, list = "bullets" }
limits.three = { max_items = 3, list = "bullets", format = "plain-text" }
[task.prompts.en]
instruction = "List facts from the following text:"
completion = "Article:\\n{text}\\n\\n{size} from this article:\\n-"
'''


@pytest.fixture(scope="module")
def live(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("serve")
    (home / "config").mkdir()
    (home / "config" / "tasks.toml").write_text(FACTS_TASK)
    server = start_server(home, tiny_gguf)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page(live: LiveServer) -> Iterator[Any]:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        page.goto(live.sign_in_url)
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_selector("#task-options[data-ready=true]", state="attached")
        page.select_option("#model-select", MODEL)
        yield page


def run_capturing(page: Any, task: str) -> dict[str, Any]:
    """Click the task's button; return the request body it sent (the seed fixed, so that the
    tiny model's random weights give a non-empty answer)."""
    sent: list[dict[str, Any]] = []

    def handle(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        sent.append(body)
        route.continue_(post_data=json.dumps({**body, "seed": 7}))

    page.route("**/api/tasks/*", handle)
    try:
        page.fill("#prompt", TEXT)
        page.click(f".task-btn[data-task={task}]")
        deadline = time.monotonic() + 60
        while page.get_attribute("#output", "data-result") != "complete":
            assert time.monotonic() < deadline, page.inner_text("#gen-status")
            time.sleep(0.05)
    finally:
        page.unroute("**/api/tasks/*", handle)
    assert len(sent) == 1
    return sent[0]


def test_the_controls_come_from_the_task_list_with_the_users_task(page: Any) -> None:
    pickable = page.eval_on_selector_all("#task-options-for option", "els => els.map(e => e.value)")
    assert {"summarize", "rewrite", "write", "question", "facts"} <= set(pickable)
    assert page.locator(".task-btn[data-task=facts]").count() == 1  # the user's task too
    page.select_option("#task-options-for", "summarize")
    kinds = page.eval_on_selector_all("#task-option-controls [data-option]",
                                      "els => els.map(e => [e.dataset.option, e.tagName])")
    assert kinds == [["type", "SELECT"], ["length", "SELECT"], ["format", "SELECT"]]
    page.select_option("#task-options-for", "question")
    count = page.locator("#opt-question-count")
    assert count.get_attribute("type") == "number" and count.get_attribute("max") == "5"


def test_a_headline_sends_its_options_and_comes_back_on_one_line(page: Any) -> None:
    page.select_option("#task-options-for", "summarize")
    page.select_option("#opt-summarize-type", "headline")
    page.select_option("#opt-summarize-length", "short")
    page.select_option("#opt-summarize-format", "plain-text")
    body = run_capturing(page, "summarize")
    assert body["options"] == {"type": "headline", "length": "short", "format": "plain-text"}
    answer = page.inner_text("#output").strip()
    assert answer and "\n" not in answer and len(answer.split()) <= 12


def test_a_user_tasks_option_is_sent_and_its_limit_kept(page: Any) -> None:
    page.select_option("#task-options-for", "facts")
    page.select_option("#opt-facts-size", "three")
    body = run_capturing(page, "facts")
    assert body["options"] == {"size": "three"}
    lines = [x for x in page.inner_text("#output").splitlines() if x.strip()]
    assert 1 <= len(lines) <= 3


def test_markdown_key_points_render_as_a_list_not_as_html(page: Any) -> None:
    page.select_option("#task-options-for", "summarize")
    page.select_option("#opt-summarize-type", "key-points")
    page.select_option("#opt-summarize-format", "markdown")
    body = run_capturing(page, "summarize")
    assert body["options"]["type"] == "key-points" and body["options"]["format"] == "markdown"
    items = page.locator("#output ul li")
    assert 1 <= items.count() <= 3
    assert not page.inner_text("#output").lstrip().startswith("-")  # rendered, not raw
