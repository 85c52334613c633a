"""llama-cpp-python's own server (`python -m llama_cpp.server`) as an upstream: its models
discovered, chat and stream through the front server with the openai SDK, a task."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import LiveServer
from upstream_harness import start_front, upstream_table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_cpp_server(tiny_gguf: Path) -> Iterator[str]:
    """`python -m llama_cpp.server` on the tiny model; yields its base URL."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf),
         "--model_alias", "tiny-lcp", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--n_threads", "1", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("llama_cpp.server did not start: "
                               + (process.stderr.read() if process.stderr else ""))
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(20)


@pytest.fixture(scope="module")
def front(llama_cpp_server: str, tiny_gguf: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_front(tmp_path_factory.mktemp("front"), tiny_gguf,
                       [upstream_table("lcp", llama_cpp_server)])
    yield live
    live.stop()


def test_models_are_discovered_and_marked(front: LiveServer) -> None:
    cards = {m.id: m for m in front.client().models.list().data}
    assert cards["tiny-lcp"].model_extra is not None
    assert cards["tiny-lcp"].model_extra["remote"] == "lcp"


def test_chat_and_stream_through_the_front(front: LiveServer, llama_cpp_server: str) -> None:
    ask: dict[str, Any] = {"model": "tiny-lcp", "max_tokens": 10, "temperature": 0,
                           "logit_bias": {"2": -100},
                           "messages": [{"role": "user", "content": "Say hi."}]}
    whole = front.client().chat.completions.create(**ask)
    direct = httpx.post(llama_cpp_server + "/v1/chat/completions", json=ask, timeout=60).json()
    assert whole.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert whole.choices[0].finish_reason == "length"
    chunks = list(front.client().chat.completions.create(
        **ask, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None  # the front always ends with usage when asked


def test_a_task_runs_on_the_llama_cpp_server(front: LiveServer) -> None:
    body = {"text": "Volcanoes erupt often. Magma rises.", "model": "tiny-lcp",
            "max_tokens": 12, "seed": 1}
    with front.http() as http, http.stream("POST", "/api/tasks/summarize", json=body) as r:
        assert r.status_code == 200, r.read()
        raw = r.read().decode()
    last = raw.strip().split("\n\n")[-1].splitlines()
    assert last[0] == "event: done", raw[-500:]
    assert json.loads(last[1][5:])["model"] == "tiny-lcp"


def test_completion_logprobs_come_through_from_llama_cpp_server(
        front: LiveServer, llama_cpp_server: str) -> None:
    ask: dict[str, Any] = {"model": "tiny-lcp", "prompt": "Once upon", "max_tokens": 5,
                           "temperature": 0, "logit_bias": {"2": -100}, "logprobs": 2}
    whole = front.client().completions.create(**ask)
    direct = httpx.post(llama_cpp_server + "/v1/completions", json=ask, timeout=60).json()
    lp, expected = whole.choices[0].logprobs, direct["choices"][0]["logprobs"]
    assert lp is not None and lp.tokens == expected["tokens"] and len(lp.tokens) == 5
    assert lp.token_logprobs == pytest.approx(expected["token_logprobs"], abs=1e-3)
    assert lp.top_logprobs is not None
    assert [sorted(t) for t in lp.top_logprobs] == [sorted(t) for t in expected["top_logprobs"]]
    assert "".join(lp.tokens) == whole.choices[0].text


def test_chat_logprobs_come_through_from_llama_cpp_server(
        front: LiveServer, llama_cpp_server: str) -> None:
    ask: dict[str, Any] = {"model": "tiny-lcp", "max_tokens": 5, "temperature": 0,
                           "logit_bias": {"2": -100}, "logprobs": True, "top_logprobs": 2,
                           "messages": [{"role": "user", "content": "Say hi."}]}
    whole = front.client().chat.completions.create(**ask)
    direct = httpx.post(llama_cpp_server + "/v1/chat/completions", json=ask, timeout=60).json()
    got = whole.choices[0].logprobs
    expected = direct["choices"][0]["logprobs"]["content"]
    assert got is not None and got.content is not None
    assert [t.token for t in got.content] == [t["token"] for t in expected]
    assert all(len(t.top_logprobs) == 2 for t in got.content)
