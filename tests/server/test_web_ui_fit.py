"""The web UI at popup, phone and desktop widths: no sideways scroll, long labels truncated
with the full text on hover, the context the runtime really uses, and a task on a model
that is not loaded showing the load instead of "generating…"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import MODEL, LiveServer, chromium, start_server

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# A user model whose label is far wider than a phone: it once stretched the page to 710 px.
LONG = "tiny-with-a-model-name-long-enough-to-stretch-the-picker-past-any-phone"
CAP = 512  # LOCALLOOM_MAX_DEFAULT_CTX: the runtime gives the 2,048-token tiny model this much
TEXT = ("Glaciers in Patagonia are retreating quickly. Meltwater lakes grow each summer "
        "and the ice front breaks off into them.")


WIDE_TURNS = [
    {"role": "user", "content": "Show me the loop, and the link: " + "x" * 120},
    {"role": "assistant", "content": (
        "Here it is:\n\n```python\nfor index, value in enumerate(values): "
        "print(index, value, sep=' -> ', end='\\n', file=sys.stderr, flush=True)  # long\n```"
        "\n\n1. See <https://example.com/" + "a" * 100 + ">\n2. **Done**")},
]


@pytest.fixture(scope="module")
def capped(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with a long-named model and the default context capped at 512 tokens."""
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf, ids=(MODEL, LONG),
                        env={"LOCALLOOM_MAX_DEFAULT_CTX": str(CAP)})
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium via Playwright; skipped without it, except in CI where it must be there."""
    with chromium() as launched:
        yield launched


def _open(browser: Any, server: LiveServer, width: int, height: int = 900) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(server.sign_in_url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def _overflow(page: Any) -> tuple[int, int]:
    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    return int(width), int(inner)


@pytest.mark.parametrize("width", [360, 480, 600, 1280])
def test_every_view_fits_the_width_without_sideways_scroll(capped: LiveServer, browser: Any,
                                                           width: int) -> None:
    page = _open(browser, capped, width)
    page.select_option("#model-select", LONG)
    page.click("#history-toggle")
    page.wait_for_selector("#history-list[data-state=ready]", state="attached")
    page.click("#pair-box summary")  # the browser extension panel, open
    page.wait_for_selector("#pair-list[data-state=ready]", state="attached")
    label = page.locator(f"#model-select option[value='{LONG}']").inner_text()
    assert LONG in label
    assert page.get_attribute("#model-select", "title") == label  # the full text on hover
    box = page.locator("#model-select").bounding_box()
    assert box is not None and box["x"] + box["width"] <= width
    scroll, inner = _overflow(page)
    assert scroll <= inner, f"one-shot view is {scroll} px wide in a {inner} px window"
    if width in (360, 1280):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"web-oneshot-{width}.png"), full_page=True)
    # A conversation with wide things in it (restored from the tab's storage, as after a
    # reload): a long code line scrolls inside its block, a long word wraps.
    page.evaluate("turns => sessionStorage.setItem('localloom-chat', JSON.stringify("
                  "{system: '', turns}))", WIDE_TURNS)
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.click("#mode-chat")
    assert page.locator("#chat-log pre code").count() == 1
    scroll, inner = _overflow(page)
    assert scroll <= inner, f"chat view is {scroll} px wide in a {inner} px window"
    code_box = page.locator("#chat-log pre").bounding_box()
    assert code_box is not None and code_box["x"] + code_box["width"] <= width
    if width in (360, 1280):
        page.screenshot(path=str(SHOTS / f"web-chat-wide-{width}.png"), full_page=True)
    page.close()


def test_the_info_line_shows_the_context_the_runtime_uses(capped: LiveServer,
                                                          browser: Any) -> None:
    with capped.http() as http:
        http.post(f"/api/models/{MODEL}/unload")
        before = {m["id"]: m for m in http.get("/api/models").json()["models"]}[MODEL]
    assert before["context_length"] == 2048  # what the model was trained for
    assert before["runtime_context"] == CAP and not before["runtime_context_measured"]

    page = _open(browser, capped, 360)
    page.select_option("#model-select", MODEL)
    info = page.inner_text("#model-info")
    assert f"context {CAP} tokens (trained for 2,048)" in info
    assert "context 2048" not in info and "context 2,048" not in info
    page.click("#load-btn")
    page.wait_for_selector("#progress[data-state=done]", state="attached", timeout=30_000)
    with capped.http() as http:
        after = {m["id"]: m for m in http.get("/api/models").json()["models"]}[MODEL]
        engine_ctx = http.get("/api/status").json()["runtime"][MODEL]["n_ctx"]
    assert after["runtime_context_measured"] and after["runtime_context"] == engine_ctx == CAP
    assert f"context {CAP} tokens" in page.inner_text("#model-info")
    page.close()


def test_the_info_line_names_a_models_capabilities(capped: LiveServer, browser: Any) -> None:
    page = _open(browser, capped, 360)
    page.select_option("#model-select", "Qwen3-4B-Q4_K_M")  # built in, not downloaded
    assert " · tools · reasoning · " in page.inner_text("#model-info")
    page.select_option("#model-select", "bge-small-en-v1.5")
    assert " · embedding · " in page.inner_text("#model-info")
    page.select_option("#model-select", MODEL)  # a plain chat model: no flags to show
    info = page.inner_text("#model-info")
    assert "tools" not in info and "reasoning" not in info
    page.close()


_RECORD = """() => {
  const $ = (id) => document.getElementById(id);
  window.snaps = [];
  const snap = () => window.snaps.push({
    progress: $("progress").dataset.state, loadDisabled: $("load-btn").disabled,
    gen: $("gen-status").textContent, header: $("status").textContent,
    result: $("output").dataset.result || "" });
  new MutationObserver(snap).observe(document.body,
    { subtree: true, attributes: true, childList: true, characterData: true });
}"""


def _fixed_seed(route: Any) -> None:
    # The tiny model's random weights may end a text at once; this seed gives a non-empty one.
    body = json.loads(route.request.post_data or "{}")
    route.continue_(post_data=json.dumps({**body, "seed": 7}))


def test_a_task_on_an_unloaded_model_shows_the_load_and_the_new_count(
        capped: LiveServer, browser: Any) -> None:
    with capped.http() as http:
        for model_id in (MODEL, LONG):
            http.post(f"/api/models/{model_id}/unload")
    page = _open(browser, capped, 360)
    page.select_option("#model-select", MODEL)
    assert page.inner_text("#status").endswith("0 loaded")
    page.route("**/api/tasks/**", _fixed_seed)
    page.evaluate(_RECORD)  # every state the page goes through, seen from inside
    page.fill("#prompt", TEXT)
    page.fill("#max-tokens", "24")
    page.click(".task-btn[data-task=summarize]")
    page.wait_for_selector("#output[data-result=complete]", timeout=60_000)
    snaps: list[dict[str, Any]] = page.evaluate("() => window.snaps")

    loading = [s for s in snaps if s["gen"].startswith("loading")]
    assert loading, snaps
    assert any(s["progress"] == "running" and s["loadDisabled"] for s in loading), loading
    assert not any(s["gen"] == "generating…" for s in loading)
    # The header counted the model before the task's text arrived, not only at the end.
    working = [s for s in snaps if s["gen"] == "summarize…"]
    assert working and all(s["header"].endswith("1 loaded") for s in working), working
    assert "ready" in page.inner_text("#progress-text")
    assert page.is_enabled("#load-btn") and page.inner_text("#load-btn") == "Loaded ✓"
    assert "summarize done" in page.inner_text("#gen-status")
    page.close()
