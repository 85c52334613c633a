"""The web UI's "Browser extension" panel pairs an extension origin, shows its token once,
and revokes it: the token works from that origin only while the pairing lives."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_harness import LiveServer, chromium

pytestmark = pytest.mark.browser

ORIGIN = "chrome-extension://" + "abcdefghijklmnop" * 2


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _models_from_extension(server: LiveServer, token: str) -> httpx.Response:
    return httpx.get(server.base_url + "api/models", timeout=30,
                     headers={"Authorization": f"Bearer {token}", "Origin": ORIGIN})


def test_pair_in_the_web_ui_gives_a_token_that_works_until_revoked_there(
        server: LiveServer, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 360, "height": 800})
    page.goto(server.sign_in_url)
    page.wait_for_selector("body[data-ready=true]")
    assert not page.is_visible("#pair-origin")  # collapsed until asked for
    page.click("#pair-box summary")
    page.wait_for_selector("#pair-list[data-state=ready]", state="attached")
    assert page.inner_text("#pair-count") == "No extension is paired."

    page.fill("#pair-origin", "https://example.com")
    page.click("#pair-btn")
    page.wait_for_selector("#error:not([hidden])")
    assert "not a browser extension origin" in page.inner_text("#error-text")
    page.click("#error-close")

    page.fill("#pair-origin", ORIGIN + "/")
    page.click("#pair-btn")
    page.wait_for_selector("#pair-token-box:not([hidden])")
    token = page.inner_text("#pair-token").strip()
    assert token.startswith("llx_")
    assert page.inner_text("#pair-token-for") == ORIGIN
    page.wait_for_selector(f"#pair-list li[data-origin='{ORIGIN}']")
    scroll, inner = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= inner  # the long token wraps inside the 360 px panel

    answer = _models_from_extension(server, token)
    assert answer.status_code == 200, answer.text
    assert any(m["id"] == "tiny" for m in answer.json()["models"])
    other = httpx.get(server.base_url + "api/models", timeout=30, headers={
        "Authorization": f"Bearer {token}", "Origin": "chrome-extension://" + "p" * 32})
    assert other.status_code == 403

    page.click(f"#pair-list li[data-origin='{ORIGIN}'] .pair-revoke")
    page.wait_for_selector(f"#pair-list li[data-origin='{ORIGIN}']", state="detached")
    assert page.inner_text("#pair-count") == "No extension is paired."
    assert page.is_hidden("#pair-token-box")  # the token is not left on screen
    refused = _models_from_extension(server, token)
    assert refused.status_code == 403, refused.text
    page.close()
