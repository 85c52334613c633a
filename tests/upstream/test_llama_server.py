"""llama-server, built from the pinned llama.cpp source (``make llama-server``), as an
upstream: discovery, chat, stream with usage and a task through the front server.

Without the binary the test is skipped locally and fails under CI (``make test`` builds it
first; the build is cached)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import LiveServer
from upstream_harness import start_front, upstream_table

REPO = Path(__file__).resolve().parents[2]


def _binary() -> Path:
    import sys

    sys.path.insert(0, str(REPO))
    from bench.upstream_peer import default_llama_server

    exe = default_llama_server()
    if not exe.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exe} is missing: `make llama-server` builds it (make test does).")
        pytest.skip(f"{exe} is missing: run `make llama-server` (about 40 min on 2 cores)")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tiny_gguf: Path) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [str(_binary()), "-m", str(tiny_gguf), "--alias", "tiny-ls", "--host", "127.0.0.1",
         "--port", str(port), "-c", "4096", "-np", "2", "-t", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "llama-server died"
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(20)


@pytest.fixture(scope="module")
def front(llama_server: str, tiny_gguf: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_front(tmp_path_factory.mktemp("front"), tiny_gguf,
                       [upstream_table("ls", llama_server)])
    yield live
    live.stop()


def test_llama_server_models_chat_stream_and_usage(front: LiveServer,
                                                   llama_server: str) -> None:
    cards = {m.id: m for m in front.client().models.list().data}
    assert cards["tiny-ls"].model_extra is not None
    assert cards["tiny-ls"].model_extra["remote"] == "ls"
    ask: dict[str, Any] = {"model": "tiny-ls", "max_tokens": 10, "temperature": 0,
                           "logit_bias": {"2": -100},
                           "messages": [{"role": "user", "content": "Say hi."}]}
    whole = front.client().chat.completions.create(**ask)
    direct = httpx.post(llama_server + "/v1/chat/completions", json=ask, timeout=60).json()
    assert whole.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert whole.usage is not None
    assert whole.usage.completion_tokens == direct["usage"]["completion_tokens"] == 10
    chunks = list(front.client().chat.completions.create(
        **ask, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
        == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10


def test_a_task_runs_on_llama_server(front: LiveServer) -> None:
    body = {"text": "Volcanoes erupt often. Magma rises.", "model": "tiny-ls",
            "max_tokens": 12, "seed": 1, "save": True}
    with front.http() as http, http.stream("POST", "/api/tasks/summarize", json=body) as r:
        assert r.status_code == 200, r.read()
        raw = r.read().decode()
    last = raw.strip().split("\n\n")[-1].splitlines()
    assert last[0] == "event: done", raw[-500:]
    done = json.loads(last[1][5:])
    with front.http() as http:
        assert http.get(f"/api/history/{done['saved_id']}").json()["model"] == "tiny-ls"
