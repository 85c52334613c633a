"""Drive the real extension in Debian's Chromium: load it unpacked, reach its service
worker and read its closed shadow roots through the DevTools protocol."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.server_harness import CHROMIUM, LAUNCH_ARGS

EXTENSION = Path(__file__).resolve().parents[2] / "extension"
EXT_ID = "eldlknbhjpojdfecipeiaeaafngnclln"
# A second key: the same code under another id, never paired.
OTHER_KEY = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAk8x7YoSdY0fr4Vl0IZLF/KXnWDw5aG5KvWH/XfWm5V9Jmf"
    "WOTWpPp/LeQyDhTKwqZxAseEO7Qt27lBIfryoZ08+jGtnq+y1cabF0nppqRQ+ZXlSpCL1lVgM8gS+XYbksfeVPvRA5"
    "DLtemNf7HOb/7sMtfcukEpHkZThmNtzb10jPCq7wg6EK3nkjAYWiexFAn4wllGerEBcexL9Ao9Av4sgPtDol0/3u"
    "VEJ6FPjrAEliTqkw0z6A+gnOeDm1IWp7rAGnwpjWnvTsP1TvybOGM6fku30lAle+K/f2YJ2rP/EFxRb4oIcupv4l"
    "x3jha6AvRQgYIp+50koCficMiQvrUwIDAQAB")
OTHER_ID = "peibehojiknlpceaniiaadkdfdnmeema"


def extension_copy(target: Path, *, key: str | None = None, allow_pages: bool = True) -> Path:
    """A copy of the extension where the user has allowed 127.0.0.1 pages (the optional
    host permission, granted ahead as a browser policy would), optionally under another key."""
    shutil.copytree(EXTENSION, target)
    manifest = json.loads((target / "manifest.json").read_text())
    if allow_pages:
        manifest["host_permissions"] = [*manifest["host_permissions"], "http://127.0.0.1/*"]
    if key:
        manifest["key"] = key
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@dataclass
class Browser:
    """A Chromium profile with extensions loaded, and their service workers by id."""

    context: Any
    workers: dict[str, Any]

    def worker(self, ext_id: str = EXT_ID) -> Any:
        """The extension's service worker (woken again if Chromium stopped it)."""
        for w in self.context.service_workers:
            if f"//{ext_id}/" in w.url:
                return w
        page = self.context.new_page()
        page.goto(f"chrome-extension://{ext_id}/popup.html")
        page.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for w in self.context.service_workers:
                if f"//{ext_id}/" in w.url:
                    return w
            time.sleep(0.1)
        raise AssertionError(f"no service worker for {ext_id}")

    def configure(self, port: int, token: str, ext_id: str = EXT_ID, **extra: Any) -> None:
        """Store the server port and the pairing token, as the popup's Pair form does."""
        values = {"port": port, "token": token, **extra}
        self.worker(ext_id).evaluate(
            "async (v) => { await chrome.storage.local.set(v); await localloom.ready; "
            "await localloom.registerAllowedPages(); await localloom.buildMenus(); }", values)


@contextlib.contextmanager
def browser_with(*folders: Path) -> Iterator[Browser]:
    """Chromium (headless new mode) with the unpacked extensions in ``folders``."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    paths = ",".join(str(f) for f in folders)
    profile = tempfile.mkdtemp(prefix="localloom-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=False,
            args=[*LAUNCH_ARGS, "--headless=new", f"--disable-extensions-except={paths}",
                  f"--load-extension={paths}"])
        try:
            yield Browser(context=context, workers={})
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


# --------------------------------------------------------------------------- shadow DOM


def _walk(node: dict[str, Any], out: list[dict[str, Any]]) -> None:
    out.append(node)
    for key in ("children", "shadowRoots"):
        for child in node.get(key, []):
            _walk(child, out)


def shadow_nodes(page: Any, host_tag: str) -> list[dict[str, Any]]:
    """Every node inside the closed shadow root of ``<host_tag>`` (DevTools can pierce it;
    page scripts cannot)."""
    cdp = page.context.new_cdp_session(page)
    try:
        doc = cdp.send("DOM.getDocument", {"depth": -1, "pierce": True})["root"]
        nodes: list[dict[str, Any]] = []
        _walk(doc, nodes)
        hosts = [n for n in nodes if n.get("nodeName") == host_tag.upper()]
        if not hosts:
            return []
        inside: list[dict[str, Any]] = []
        for root in hosts[0].get("shadowRoots", []):
            _walk(root, inside)
        return inside
    finally:
        cdp.detach()


def shadow_text(page: Any, host_tag: str, cls: str | None = None) -> str:
    """The text in the host's shadow root (style sheets left out), or of one class in it."""
    nodes = shadow_nodes(page, host_tag)
    if cls is not None:
        for n in nodes:
            attrs = n.get("attributes", [])
            pairs = dict(zip(attrs[::2], attrs[1::2], strict=True))
            if cls in pairs.get("class", "").split():
                found: list[dict[str, Any]] = []
                _walk(n, found)
                return "".join(x.get("nodeValue", "") for x in found if x.get("nodeType") == 3)
        return ""
    texts = []
    parent_style = {c["nodeId"] for n in nodes if n.get("nodeName") == "STYLE"
                    for c in n.get("children", [])}
    for n in nodes:
        if n.get("nodeType") == 3 and n["nodeId"] not in parent_style:
            texts.append(n.get("nodeValue", ""))
    return " ".join(texts)


def click_in_shadow(page: Any, host_tag: str, label: str) -> None:
    """A real (trusted) mouse click on the shadow-root button whose text is ``label``."""
    nodes = shadow_nodes(page, host_tag)
    for n in nodes:
        if n.get("nodeName") == "BUTTON":
            text = "".join(c.get("nodeValue", "") for c in n.get("children", []))
            if text.strip() == label:
                cdp = page.context.new_cdp_session(page)
                try:
                    quad = cdp.send("DOM.getBoxModel", {"backendNodeId": n["backendNodeId"]})
                finally:
                    cdp.detach()
                q = quad["model"]["content"]
                page.mouse.click((q[0] + q[4]) / 2, (q[1] + q[5]) / 2)
                return
    raise AssertionError(f"no button {label!r} in <{host_tag}>")


def wait_for(check: Any, timeout: float = 120.0, interval: float = 0.3) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(interval)


def in_content_script(page: Any, expression: str) -> Any:
    """Evaluate ``expression`` (awaited) in the extension's content-script world of ``page``."""
    cdp = page.context.new_cdp_session(page)
    try:
        contexts: list[dict[str, Any]] = []
        cdp.on("Runtime.executionContextCreated", lambda e: contexts.append(e["context"]))
        cdp.send("Runtime.enable")
        wait_for(lambda: [c for c in contexts if c.get("name") == "LocalLoom"], timeout=5,
                 interval=0.05)
        world = next(c for c in contexts if c.get("name") == "LocalLoom")
        reply = cdp.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                              "contextId": world["id"], "returnByValue": True})
        return reply["result"].get("value")
    finally:
        cdp.detach()
