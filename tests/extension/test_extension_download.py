"""A task on a model that is not downloaded: the card offers the download when the pairing
allows it, shows its progress and then runs the task; otherwise it names the commands.

The model is served by the fake Hub (a real HTTP server on 127.0.0.1, throttled so the
download takes a moment); the server is a real `localloom serve` pointed at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ext_harness import (
    EXT_ID,
    Browser,
    browser_with,
    click_in_shadow,
    extension_copy,
    shadow_nodes,
    shadow_text,
    wait_for,
)
from typer.testing import CliRunner

from fakehub import FakeHub
from localloom.cli import app as cli_app
from server.server_harness import LiveServer, serve_pages, start_server

pytestmark = pytest.mark.browser

REPO, FILE, MODEL_ID = "fake-org/hub-model-GGUF", "hub-model.Q4_0.gguf", "hub-model"
HUB_TOML = f"""
[[model]]
id = "{MODEL_ID}"
display_name = "Hub test model"
download_size = 520000
ram_min_gb = 0.1
ram_max_gb = 0.2
context_length = 2048
[model.source]
kind = "hub"
repo = "{REPO}"
file = "{FILE}"
"""
PAGE = ("<!doctype html><html><head><title>Download</title></head><body><p id='text'>"
        "The ferry leaves at nine and returns at five; tickets are sold on board.</p>"
        "</body></html>")
ORIGIN = f"chrome-extension://{EXT_ID}"


@pytest.fixture(scope="module")
def hub(tiny_gguf: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_file(REPO, FILE, tiny_gguf.read_bytes())
        fake.throttle(200_000)  # about 2.5 s: progress shows before the task starts
        yield fake


@pytest.fixture(scope="module")
def live(hub: FakeHub, tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("serve")
    server = start_server(home, tiny_gguf, extra_toml=HUB_TOML, env={
        "HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"), "LOCALLOOM_N_THREADS": "2"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    with serve_pages({"/page": PAGE.encode()}) as port:
        yield port


@pytest.fixture(scope="module")
def browser(live: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with browser_with(extension_copy(tmp_path_factory.mktemp("ext") / "main")) as b:
        yield b


def pair(browser: Browser, live: LiveServer, *flags: str) -> None:
    result = CliRunner().invoke(cli_app, ["pair", ORIGIN, *flags],
                                env={"LOCALLOOM_HOME": str(live.home)})
    assert result.exit_code == 0, result.output
    browser.configure(live.port, result.output.strip().splitlines()[-1], model=MODEL_ID)


def run_on_selection(browser: Browser, port: int) -> Any:
    page = browser.context.new_page()
    page.set_viewport_size({"width": 1000, "height": 700})
    page.goto(f"http://127.0.0.1:{port}/page")
    page.evaluate("""() => { const r = document.createRange();
        r.selectNodeContents(document.querySelector('#text'));
        getSelection().removeAllRanges(); getSelection().addRange(r); }""")
    page.wait_for_selector("localloom-button", state="attached", timeout=10_000)
    click_in_shadow(page, "localloom-button", "✦ Summarize")
    page.wait_for_selector("localloom-card", state="attached", timeout=10_000)
    return page


def status(page: Any) -> str:
    return shadow_text(page, "localloom-card", "status")


def has_button(page: Any, label: str) -> bool:
    for n in shadow_nodes(page, "localloom-card"):
        attrs = n.get("attributes", [])
        pairs = dict(zip(attrs[::2], attrs[1::2], strict=True))
        text = "".join(c.get("nodeValue", "") for c in n.get("children", []))
        if n.get("nodeName") == "BUTTON" and text == label and "hidden" not in pairs:
            return True
    return False


def downloads(hub: FakeHub) -> int:
    return sum(1 for r in hub.requests if r.method == "GET" and FILE in r.path)


def test_without_pull_permission_the_card_names_the_commands_and_downloads_nothing(
        live: LiveServer, hub: FakeHub, browser: Browser, page_port: int) -> None:
    pair(browser, live)
    page = run_on_selection(browser, page_port)
    wait_for(lambda: status(page) == "Model not downloaded.", timeout=30)
    note = shadow_text(page, "localloom-card", "note")
    assert f"localloom pull {MODEL_ID}" in note
    assert f"localloom pair {ORIGIN} --allow-pull" in note
    assert not has_button(page, "Download and run")
    assert downloads(hub) == 0
    page.keyboard.press("Escape")  # waiting for the user, so Escape closes it
    page.wait_for_selector("localloom-card", state="detached", timeout=5_000)
    page.close()


def test_with_pull_permission_the_card_downloads_with_progress_then_runs_the_task(
        live: LiveServer, hub: FakeHub, browser: Browser, page_port: int) -> None:
    pair(browser, live, "--allow-pull")
    page = run_on_selection(browser, page_port)
    wait_for(lambda: status(page) == "Model not downloaded.", timeout=30)
    assert "Hub test model" in shadow_text(page, "localloom-card", "note")
    assert has_button(page, "Download and run")
    click_in_shadow(page, "localloom-card", "Download and run")
    seen: list[str] = []

    def finished() -> bool:
        seen.append(status(page))
        return seen[-1] in ("Done.", "Failed.")

    wait_for(finished, timeout=120, interval=0.1)
    assert seen[-1] == "Done.", shadow_text(page, "localloom-card")
    percents = [s for s in seen if s.startswith("Downloading… ") and s.endswith("%")]
    assert percents, seen  # progress was shown while the file came in
    assert shadow_text(page, "localloom-card", "out").strip()
    assert downloads(hub) >= 1
    with live.http() as client:
        models = client.get("/api/models").json()["models"]
    assert next(m for m in models if m["id"] == MODEL_ID)["cached"]
    page.close()
