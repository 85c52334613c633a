"""Chromium holds a conversation in the web UI: turns, system prompt, regenerate, copy, and
answers rendered from markdown as DOM nodes (model text never becomes HTML)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import MODEL, LiveServer, chromium

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# What the tiny model is made to write (a grammar pins its output): HTML that would run
# script if it became markup, a link to javascript:, and markdown that should render.
HOSTILE = ("<img src=x onerror=alert(1)> **bold** and `code` "
           "[bad](javascript:alert(2)) [good](https://example.com/a?b=1)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium via Playwright; skipped without it, except in CI where it must be there."""
    with chromium() as launched:
        yield launched


def _wait_for(page: Any, selector: str, predicate: Any, timeout: float = 60.0) -> Any:
    # Polling from here: the page's CSP forbids the eval that wait_for_function needs.
    deadline = time.monotonic() + timeout
    while not predicate(value := page.get_attribute(selector, "data-result")):
        assert time.monotonic() < deadline, f"{selector} never matched: {value!r}"
        time.sleep(0.05)
    return value


class Recorder:
    """Adds a fixed seed and a short length to each chat request, and keeps the bodies."""

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.extra = extra or {}

    def __call__(self, route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        self.bodies.append(body)
        route.continue_(post_data=json.dumps({**body, "seed": 11 + len(self.bodies),
                                              **self.extra}))


def _turns(page: Any) -> list[tuple[str, str]]:
    items = page.locator("#chat-log li.turn")
    return [(items.nth(i).get_attribute("data-role") or "",
             items.nth(i).locator(".body").inner_text()) for i in range(items.count())]


def _send(page: Any, text: str) -> None:
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    _wait_for(page, "#chat-log", lambda r: r in ("complete", "error"))
    assert page.get_attribute("#chat-log", "data-result") == "complete", \
        page.inner_text("#error")
    page.wait_for_selector("#chat-send:enabled")


def _open_chat(browser: Any, server: LiveServer, width: int) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    page.goto(server.sign_in_url)
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#model-select", MODEL)
    page.click("#mode-chat")
    assert page.is_visible("#chat-view") and page.is_hidden("#oneshot-view")
    return context, page, errors


def test_chat_keeps_turns_with_system_prompt_regenerate_and_copy(server: LiveServer,
                                                                 browser: Any) -> None:
    context, page, errors = _open_chat(browser, server, 1280)
    recorder = Recorder({"max_tokens": 24})
    page.route("**/v1/chat/completions", recorder)
    page.click("#system-box summary")
    page.fill("#system-prompt", "Answer in one short sentence.")
    page.dispatch_event("#system-prompt", "change")

    _send(page, "What is a glacier?")
    _send(page, "And a fjord?")
    turns = _turns(page)
    assert [role for role, _ in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0][1] == "What is a glacier?" and turns[2][1] == "And a fjord?"
    # The second question carried the whole conversation, system prompt first.
    second = recorder.bodies[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[0]["content"] == "Answer in one short sentence."
    first_answer = second[2]["content"]

    # Copy puts the answer's markdown source on the clipboard, not its rendering.
    page.locator("#chat-log li.turn").nth(1).locator(".copy-btn").click()
    page.wait_for_selector("#chat-log li.turn >> nth=1 >> .copy-btn[data-copied=true]")
    assert page.evaluate("() => navigator.clipboard.readText()") == first_answer

    # Only the last answer regenerates; it is replaced, asked with the same turns.
    assert page.locator("#chat-log .regen-btn").count() == 1
    before = _turns(page)
    page.click("#chat-log .regen-btn")
    _wait_for(page, "#chat-log", lambda r: r == "complete")
    page.wait_for_selector("#chat-send:enabled")
    turns = _turns(page)
    assert len(recorder.bodies) == 3 and recorder.bodies[2]["messages"] == second
    assert len(turns) == 4 and turns[:3] == before[:3]
    assert "done" in page.inner_text("#chat-status")

    # The conversation outlives a reload of the tab, and "New chat" clears it.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_visible("#chat-view")  # the mode is kept too
    assert _turns(page) == turns
    assert page.input_value("#system-prompt") == "Answer in one short sentence."
    page.click("#chat-clear")
    assert _turns(page) == [] and page.is_visible("#chat-empty")
    assert page.is_hidden("#error")
    assert not errors
    context.close()


@pytest.mark.parametrize("width", [360, 1280])
def test_model_markdown_renders_as_safe_html(server: LiveServer, browser: Any,
                                             width: int) -> None:
    context, page, errors = _open_chat(browser, server, width)
    schema = {"type": "string", "const": HOSTILE}
    page.route("**/v1/chat/completions", Recorder({
        "max_tokens": 200, "temperature": 0,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "answer", "schema": schema}}}))
    page.click("#system-box summary")
    page.fill("#system-prompt", "Reply with the given text.")
    _send(page, "Say something with a picture")
    answer = page.locator("#chat-log li.turn[data-role=assistant] .body")
    text = answer.inner_text()
    # The tag shows as the characters the model wrote; nothing became an element.
    assert "<img src=x onerror=alert(1)>" in text
    assert page.locator("#chat-log img, #chat-log [onerror], #chat-log script").count() == 0
    assert answer.locator("strong").inner_text() == "bold"
    assert answer.locator("code").inner_text() == "code"
    links = answer.locator("a")
    assert links.count() == 1  # javascript: stays text
    assert links.get_attribute("href") == "https://example.com/a?b=1"
    assert "noopener" in (links.get_attribute("rel") or "")
    assert "[bad](javascript:alert(2))" in text
    time.sleep(0.3)  # an onerror handler would have fired by now
    assert not errors
    size = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert size[0] <= size[1], size
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"web-chat-{width}.png"))
    context.close()


_SAMPLE = """# Plan

Intro with *stress*, __strong__ and a snake_case_name.

- one
- two `x`
  still two

3. third
4. fourth

> quoted **bit**

```python
print("<b>hi</b>")
```

<script>alert(3)</script> [rel](/api/models) <https://example.org/>"""

_SHAPE = """async (sample) => {
  const { renderMarkdown } = await import("/static/markdown.js");
  const box = document.createElement("div");
  box.append(renderMarkdown(sample));
  const all = (sel) => [...box.querySelectorAll(sel)].map((n) => n.textContent);
  return {
    blocks: [...box.children].map((n) => n.tagName.toLowerCase()),
    h: all("h3"), em: all("em"), strong: all("strong"), li: all("li"), code: all("pre code"),
    start: box.querySelector("ol").getAttribute("start"), links: [...box.querySelectorAll("a")]
      .map((a) => [a.getAttribute("href"), a.rel, a.target]),
    lang: box.querySelector("pre code").dataset.lang,
    elements: [...box.querySelectorAll("*")].map((n) => n.tagName.toLowerCase()),
    last: box.lastElementChild.textContent,
  };
}"""


def test_markdown_renderer_builds_blocks_and_keeps_markup_as_text(server: LiveServer,
                                                                  browser: Any) -> None:
    page = browser.new_page()
    page.goto(server.base_url)  # the module is public, like the page
    shape = page.evaluate(_SHAPE, _SAMPLE)
    assert shape["blocks"] == ["h3", "p", "ul", "ol", "blockquote", "pre", "p"]
    assert shape["h"] == ["Plan"] and shape["em"] == ["stress"]
    assert shape["strong"] == ["strong", "bit"]  # snake_case_name stays plain
    assert shape["li"] == ["one", "two x\nstill two", "third", "fourth"]
    assert shape["start"] == "3"
    assert shape["code"] == ['print("<b>hi</b>")'] and shape["lang"] == "python"
    assert shape["links"] == [["https://example.org/", "noopener noreferrer", "_blank"]]
    assert shape["last"].startswith("<script>alert(3)</script> [rel](/api/models)")
    assert not {"script", "b", "img"} & set(shape["elements"])
