"""The server-engine seam: a body is parsed once, into the engine's own request model; the
engine keeps the token counts of a stream; a slow chat template never stops the event loop.

One live server with the tiny model ("tiny") and the same weights under a runaway chat
template ("slow", rendered until the renderer's 2 s bound stops it).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import LiveServer, start_server

from localloom.engine.protocol import ChatCompletionRequest, CompletionRequest
from localloom.errors import InvalidRequestError
from localloom.server.errors import reply_for
from localloom.testing.gguf import write_tiny_gguf

# Quadratic string growth: far under the iteration bound, so the 2 s deadline stops it.
_RUNAWAY_TEMPLATE = ("{% set ns = namespace(s='a') %}{% for i in range(150000) %}"
                     "{% set ns.s = ns.s ~ 'abcdefgh' %}{% endfor %}{{ ns.s|length }}")
_HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def live(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server: "tiny", and "slow" with a chat template that runs for its whole bound."""
    models = tmp_path_factory.mktemp("models")
    slow = write_tiny_gguf(models / "slow.gguf", chat_template=_RUNAWAY_TEMPLATE)
    server = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf,
                          extra_models={"slow": slow}, env={"LOCALLOOM_MAX_LOADED_MODELS": "2"})
    yield server
    server.stop()


def _refusal(model: type[ChatCompletionRequest] | type[CompletionRequest],
             body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidRequestError) as caught:
        model.parse(body)
    reply = reply_for(caught.value)
    return reply.status, reply.body


@pytest.mark.parametrize("body", [
    {"model": "tiny", "messages": _HI, "stream_options": {"include_usage": True}},
    {"model": "tiny", "messages": _HI, "top_p": 0},
    {"model": "tiny", "messages": _HI, "stop": [""]},
    {"model": "tiny", "messages": _HI, "temprature": 0.5},
    {"model": "tiny", "messages": []},
], ids=["stream-options-without-stream", "top-p-bound", "empty-stop", "typo", "no-messages"])
def test_a_chat_body_is_refused_by_the_engine_model_itself_with_its_error_body(
        live: LiveServer, body: dict[str, Any]) -> None:
    status, expected = _refusal(ChatCompletionRequest, body)
    with live.http() as http:
        r = http.post("/v1/chat/completions", json=body)
    assert (r.status_code, r.json()) == (status, expected)


def test_a_completion_body_is_refused_by_the_engine_model_itself(live: LiveServer) -> None:
    body = {"model": "tiny", "prompt": ["one", "two"], "max_tokens": 4}
    status, expected = _refusal(CompletionRequest, body)
    with live.http() as http:
        r = http.post("/v1/completions", json=body)
    assert (r.status_code, r.json()) == (status, expected)


def _tokens_out(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    found = re.search(r'localloom_tokens_total\{direction="out",model="tiny"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def _stream(http: httpx.Client, **extra: Any) -> list[dict[str, Any]]:
    body = {"model": "tiny", "messages": _HI, "stream": True, "max_tokens": 6,
            "temperature": 0, "logit_bias": {"2": -100}, **extra}
    chunks = []
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line.removeprefix("data: ")))
    return chunks


def test_a_stream_is_counted_whether_or_not_the_client_asked_for_usage(
        live: LiveServer) -> None:
    with live.http() as http:
        before = _tokens_out(http)
        plain = _stream(http)
        after_plain = _tokens_out(http)
        with_usage = _stream(http, stream_options={"include_usage": True})
        after_usage = _tokens_out(http)
    assert all(c.get("usage") is None for c in plain)  # nothing the client did not ask for
    assert plain[-1]["choices"][0]["finish_reason"] == "length"
    assert after_plain - before == 6
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["completion_tokens"] == 6
    assert all(c.get("usage") is None for c in with_usage[:-1])
    assert after_usage - after_plain == 6


def test_a_runaway_chat_template_does_not_hold_up_health(live: LiveServer) -> None:
    with live.http() as http:  # load "slow" first: the measure is of rendering alone
        http.post("/api/pull", json={"model": "slow"}, timeout=60)
    answer: dict[str, Any] = {}

    def chat() -> None:
        started = time.perf_counter()
        with live.http(timeout=30) as http:
            r = http.post("/v1/chat/completions",
                          json={"model": "slow", "messages": _HI, "max_tokens": 2})
        answer.update(status=r.status_code, body=r.json(), took=time.perf_counter() - started)

    worker = threading.Thread(target=chat)
    worker.start()
    latencies = []
    with live.http() as http:
        while worker.is_alive():
            started = time.perf_counter()
            assert http.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.05)
    worker.join()
    assert answer["took"] >= 1.5  # the template ran (to its 2 s bound) meanwhile
    assert answer["status"] == 400 and "took over" in answer["body"]["error"]["message"]
    assert len(latencies) >= 10 and max(latencies) < 0.5, latencies
