"""Start a real `localloom serve` process on 127.0.0.1 with the tiny GGUF as a user model."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

_URL_RE = re.compile(r"(http://127\.0\.0\.1:(\d+)/)#token=([A-Za-z0-9_\-]+)")
MODEL = "tiny"
# No end-of-text token: generations run to max_tokens, so they last as long as a test needs.
NO_EOS = {"2": -100}
# A generation that outlasts any timeout in the tests on any machine: 16,000 tokens of the tiny
# model take seconds even at thousands of tokens a second (1,900 once finished inside a 2 s drain
# on a fast CI box). LONG_CTX gives each slot the room for it.
LONG_TOKENS = 16_000
LONG_CTX = {"LOCALLOOM_N_CTX": "16384"}
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium via Playwright; skips without it, except in CI where it must be there."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def serve_pages(pages: Mapping[str, bytes],
                received: list[dict[str, str]] | None = None) -> Iterator[int]:
    """Another web server on 127.0.0.1 (an attacker's page): path -> HTML; yields its port.

    ``pages`` is read on each request, so a dict filled later is served too; ``received``
    (if given) collects every request's headers.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if received is not None:
                received.append(dict(self.headers.items()))
            page = pages.get(self.path.split("?")[0], b"<!doctype html><p>hello</p>")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()


def models_toml(models: Mapping[str, Path]) -> str:
    """A models.toml registering each id -> GGUF path as a user model (source kind "local")."""
    tables = []
    for model_id, model_path in models.items():
        tables.append(
            f'[[model]]\nid = "{model_id}"\ndisplay_name = "Tiny test model {model_id}"\n'
            "download_size = 500000\nram_min_gb = 0.1\nram_max_gb = 0.2\n"
            "context_length = 2048\n[model.source]\nkind = \"local\"\n"
            f"path = {str(model_path)!r}\n"
        )
    return "\n".join(tables)


@dataclass
class LiveServer:
    """A running `localloom serve`: its URLs, token, process and log lines."""

    process: subprocess.Popen[str]
    home: Path
    sign_in_url: str = ""
    base_url: str = ""
    token: str = ""
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.base_url.rsplit(":", 1)[1].strip("/"))

    def logs(self) -> str:
        """Everything the server logged (stderr)."""
        return "".join(self.stderr)

    def client(self, token: str | None = None, **kwargs: object) -> openai.OpenAI:
        """The official OpenAI client pointed at this server."""
        return openai.OpenAI(base_url=self.base_url + "v1", api_key=token or self.token,
                             max_retries=0, **kwargs)  # type: ignore[arg-type]

    def http(self, *, auth: bool = True, timeout: float = 60.0) -> httpx.Client:
        """A plain HTTP client, with the bearer token unless auth=False."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process and wait for it; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise


def _pump(stream: object, sink: list[str], server: LiveServer, watch: bool) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sink.append(line)
        match = _URL_RE.search(line) if watch else None
        if match and not server.ready.is_set():
            server.sign_in_url = match.group(0)
            server.base_url = match.group(1)
            server.token = match.group(3)
            server.ready.set()


def start_server(home: Path, model_path: Path, *, ids: tuple[str, ...] = (MODEL,),
                 extra_models: Mapping[str, Path] | None = None,
                 env: Mapping[str, str] | None = None, args: tuple[str, ...] = (),
                 timeout: float = 60.0, extra_toml: str = "") -> LiveServer:
    """Start `python -m localloom serve --port 0` with its own LOCALLOOM_HOME.

    The tiny GGUF is registered under each of ``ids``; ``extra_models`` adds others;
    ``extra_toml`` is appended to models.toml (e.g. a Hub model for a fake Hub).
    """
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    models = {model_id: model_path for model_id in ids} | dict(extra_models or {})
    (config / "models.toml").write_text(models_toml(models) + "\n" + extra_toml,
                                        encoding="utf-8")
    full_env = {**os.environ, "LOCALLOOM_HOME": str(home), "PYTHONUNBUFFERED": "1",
                "LOCALLOOM_N_THREADS": "1", **(env or {})}
    full_env.pop("LOCALLOOM_MODELS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "localloom", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    server = LiveServer(process=process, home=home)
    threading.Thread(target=_pump, args=(process.stdout, server.stdout, server, True),
                     daemon=True).start()
    threading.Thread(target=_pump, args=(process.stderr, server.stderr, server, False),
                     daemon=True).start()
    deadline = time.monotonic() + timeout
    while not server.ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            time.sleep(0.2)
            raise RuntimeError("the server did not start:\n" + "".join(server.stdout)
                               + server.logs())
    return server


def read_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream, from ``response.iter_lines()``."""
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)
