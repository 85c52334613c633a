"""Debian's Chromium, driven by Playwright, uses the web UI like a person would."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import MODEL, NO_EOS, LiveServer, chromium, serve_pages

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium via Playwright; skipped without it, except in CI where it must be there."""
    with chromium() as launched:
        yield launched


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


def _wait_for_rate(page: Any, selector: str, timeout: float = 30.0) -> float:
    # The page shows "–" until a quarter second of tokens makes the rate mean something.
    deadline = time.monotonic() + timeout
    while (text := page.inner_text(selector)) == "–":
        assert time.monotonic() < deadline, f"{selector} never showed a rate"
        time.sleep(0.05)
    return float(text)


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
    rate = _wait_for_rate(page, "#tps")
    assert rate > 0
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


# Clicks Stop from inside the page the moment the first text lands: as early as a person
# could ever stop, which once showed "10000.0 tokens/s".
_STOP_AT_FIRST_TEXT = """() => {
  const out = document.getElementById("output");
  const watch = new MutationObserver(() => {
    if (!out.textContent) return;
    watch.disconnect();
    document.getElementById("stop-btn").click();
  });
  watch.observe(out, { childList: true, characterData: true, subtree: true });
}"""


def _send_and_read(page: Any, stop_at_first: bool) -> tuple[str, str]:
    if stop_at_first:
        page.evaluate(_STOP_AT_FIRST_TEXT)
    page.click("#send-btn")
    page.wait_for_selector("#output[data-result=complete], #output[data-result=stopped]",
                           timeout=60_000)
    return page.inner_text("#tps"), page.inner_text("#gen-status")


def test_tokens_per_second_are_ones_the_model_reaches_even_after_an_early_stop(
        server: LiveServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.sign_in_url)
    page.wait_for_selector("body[data-ready=true]")
    page.select_option("#model-select", MODEL)
    page.click("#load-btn")
    page.wait_for_selector("#progress[data-state=done]", state="attached", timeout=30_000)

    page.route("**/v1/chat/completions", _ban_end_of_text)
    page.fill("#prompt", "Tell me a story")
    page.fill("#max-tokens", "1900")
    shown, status = _send_and_read(page, stop_at_first=False)
    with server.http() as http:
        decode = http.get("/api/status").json()["runtime"][MODEL]["decode_tokens_per_s"]
    assert decode > 0 and status.startswith("done · 1900 tokens · first after ")
    # Measured in the browser, over the network: never above what the server measured.
    assert shown == "–" or 0 < float(shown) <= 1.5 * decode, (shown, decode)

    shown, status = _send_and_read(page, stop_at_first=True)
    stopped_after = int(status.removeprefix("stopped after ").split()[0])
    assert 1 <= stopped_after < 10, status
    # Too little to tell shows "–", not a token or two over a fraction of a millisecond.
    assert shown == "–", (shown, status)
    assert page.inner_text("#output")  # what did arrive stays
    page.close()


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
    assert response is not None and response.status == 200  # the page holds no data
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "localloom serve" in page.inner_text("#error-text")


_RECORDER_PAGE = b"""<!doctype html><html><body><img src="/pixel.png">
<script>fetch("/probe", {credentials: "include"}).finally(() => {
  document.body.dataset.done = "true"; });</script></body></html>"""


def test_another_local_port_receives_no_credential_the_api_accepts(
        server: LiveServer, browser: Any) -> None:
    """A program on another port of 127.0.0.1 (another user's, say) that the signed-in
    browser visits, and that embeds resources from itself, sees every header the browser
    sends it: none of them is, or holds, a credential for this server."""
    received: list[dict[str, str]] = []
    with serve_pages({"/": _RECORDER_PAGE}, received) as other_port:
        context = browser.new_context()
        page = context.new_page()
        page.goto(server.sign_in_url)
        page.wait_for_selector("#model-select option", state="attached", timeout=30_000)
        assert "#token=" not in page.url  # taken out of the address bar
        assert context.cookies() == []  # signed in without any cookie
        page.goto(f"http://127.0.0.1:{other_port}/")
        page.wait_for_selector("body[data-done=true]", state="attached", timeout=30_000)
        context.close()
    assert len(received) >= 3, received  # the page, its image and its fetch
    values = {v for headers in received for v in headers.values()}
    values |= {part.strip() for v in values for part in re.split(r"[;,= ]", v) if part.strip()}
    assert not any(server.token in v for v in values)
    with server.http(auth=False) as api:
        for value in sorted(values):
            for headers in ({"Authorization": f"Bearer {value}"}, {"Cookie": value}):
                if not value.isascii():
                    continue
                assert api.get("/api/history", headers=headers).status_code == 401, value


_HOSTILE_PAGE = """<!doctype html><html><body><iframe name="sink"></iframe>
<form id="f" method="POST" target="sink" enctype="text/plain"
      action="TARGET/api/models/tiny/unload?evil=7"><input name='{"a":"' value='1"}'></form>
<script>
const T = "TARGET";
const tries = [
  () => fetch(T + "/v1/models?evil=1", {credentials: "include"}),
  () => fetch(T + "/api/models?evil=2", {mode: "no-cors", credentials: "include"}),
  () => fetch(T + "/v1/chat/completions?evil=3", {method: "POST", mode: "no-cors",
      credentials: "include", headers: {"Content-Type": "text/plain"},
      body: JSON.stringify({model: "tiny", messages: [{role: "user", content: "hi"}]})}),
  () => fetch(T + "/api/models/tiny/unload?evil=4", {method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json"}, body: "{}"}),
  () => fetch(T + "/api/models/tiny?evil=5", {method: "DELETE", credentials: "include"}),
  () => new Promise((ok) => { const i = new Image(); i.onload = i.onerror = ok;
                              i.src = T + "/api/ps?evil=6"; }),
  () => new Promise((ok) => { document.querySelector("iframe").onload = ok;
                              document.getElementById("f").submit(); }),
  () => fetch(T + "/v1/models?evil=8", {headers: {Authorization: "Bearer guess"}}),
];
(async () => {
  const results = [];
  for (const attempt of tries) {
    try { const r = await attempt(); results.push(r && r.type ? r.type + ":" + r.status : "ok"); }
    catch (e) { results.push("blocked"); }
  }
  document.body.dataset.results = JSON.stringify(results);
  document.body.dataset.done = "true";
})();
</script></body></html>"""


@pytest.fixture
def hostile_site(server: LiveServer) -> Iterator[str]:
    """Another web page on 127.0.0.1 (same site, other port: it would get any cookie)."""
    page = _HOSTILE_PAGE.replace("TARGET", server.base_url.rstrip("/")).encode()
    with serve_pages({"/": page}) as port:
        yield f"http://127.0.0.1:{port}/"


def test_a_hostile_page_in_the_signed_in_browser_gets_nothing(
        server: LiveServer, browser: Any, hostile_site: str) -> None:
    with server.http() as http, http.stream("POST", f"/api/models/{MODEL}/load") as r:
        assert "event: done" in r.read().decode()
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.sign_in_url)  # the user is signed in, in this browser
    page.goto(hostile_site)
    page.wait_for_selector("body[data-done=true]", state="attached", timeout=30_000)
    context.close()
    lines = [line for line in server.logs().splitlines() if "evil=" in line]
    seen = {int(m.group(1)): int(m.group(2))
            for m in (re.search(r"evil=(\d+) HTTP/1.1\" (\d{3})", line) for line in lines) if m}
    assert set(seen) == set(range(1, 9)), lines  # every attempt reached the server...
    assert set(seen.values()) == {403}, lines  # ...and every one was refused
    with server.http() as http:
        assert MODEL in [m["id"] for m in http.get("/api/ps").json()["models"]]
