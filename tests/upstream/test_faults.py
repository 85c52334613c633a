"""Faults between the front server and its upstreams: a wrong model, 5xx (with and without
another replica), a slow upstream, the concurrency limit, a stream cut off (a task keeps the
text it streamed), an upstream killed mid-stream and then down, the circuit breaker opening
and closing, and the per-upstream metrics.

Upstreams: ``victim`` (a `localloom serve` killed during the module), ``back`` (another,
healthy) and ``faulty`` (tests/upstream/faulty.py)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from faulty import FaultyServer
from server_harness import LiveServer, start_server
from upstream_harness import FAST_HEALTH, start_front, token_file, upstream_table

NO_EOS = {"2": -100}


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyServer]:
    server = FaultyServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def victim(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("victim"), tiny_gguf,
                        env={"LOCALLOOM_N_CTX": "16384", "LOCALLOOM_N_PARALLEL": "1"})
    yield live
    if live.process.poll() is None:
        live.stop()


@pytest.fixture(scope="module")
def front(victim: LiveServer, back: LiveServer, faulty: FaultyServer, tiny_gguf: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tables = [
        upstream_table("victim", victim.base_url, api_key_file=token_file(victim),
                       models={"tiny": "tiny"}),
        upstream_table("faulty", faulty.url, read_timeout=1.5, answer_timeout=1.5,
                       max_concurrency=1,
                       models={"hold": "hold", "slow": "slow", "broken": "fail500",
                               "cut": "cut", "wrong": "nope", "mixed": "fail500",
                               "flaky": "ok"}),
        upstream_table("back", back.base_url, api_key_file=token_file(back),
                       models={"tiny": "tiny", "mixed": "tiny"}),
    ]
    live = start_front(tmp_path_factory.mktemp("front"), tiny_gguf, tables, env=FAST_HEALTH)
    yield live
    live.stop()


def _chat(front: LiveServer, model: str, **extra: Any) -> httpx.Response:
    with front.http() as http:
        return http.post("/v1/chat/completions", json={
            "model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}],
            **extra})


def _metric(front: LiveServer, name: str, **labels: str) -> float:
    with front.http() as http:
        text = http.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"localloom_upstream_{name}{{{want}}} "):
            return float(line.split()[-1])
    return 0.0


def _wait_for(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _closed(front: LiveServer, upstream: str) -> bool:
    return _metric(front, "circuit_open", upstream=upstream) == 0


def _events(lines: Iterator[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            out.append(json.loads(line[5:]))
    return out


def test_wrong_model_is_a_404_naming_the_upstream(front: LiveServer) -> None:
    r = _chat(front, "wrong")
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["code"] == "model_not_found"
    assert "'faulty'" in error["message"] and "'nope'" in error["message"]


def test_5xx_without_another_replica_is_a_clear_502(front: LiveServer) -> None:
    _wait_for(lambda: _closed(front, "faulty"))
    r = _chat(front, "broken")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_error"
    assert "HTTP 500" in r.json()["error"]["message"]


def test_5xx_fails_over_to_the_other_replica(front: LiveServer) -> None:
    _wait_for(lambda: _closed(front, "faulty"))
    before = _metric(front, "failovers_total", upstream="faulty")
    r = _chat(front, "mixed", temperature=0)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "mixed" and r.json()["usage"]["completion_tokens"] > 0
    assert _metric(front, "failovers_total", upstream="faulty") == before + 1


@pytest.mark.parametrize(("stream", "setting"), [(False, "answer_timeout"),
                                                  (True, "read_timeout")])
def test_a_slow_upstream_times_out_with_a_clear_error(front: LiveServer, stream: bool,
                                                      setting: str) -> None:
    _wait_for(lambda: _closed(front, "faulty"))
    started = time.monotonic()
    if stream:  # nothing streamed yet: the error is the answer's status, not an event
        with front.http() as http, http.stream("POST", "/v1/chat/completions", json={
                "model": "slow", "max_tokens": 8, "stream": True,
                "messages": [{"role": "user", "content": "Hi"}]}) as r:
            r.read()
    else:
        r = _chat(front, "slow")
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert setting in r.json()["error"]["message"]
    assert time.monotonic() - started < 2.9  # the 1.5 s timeout, not the 3 s answer


def test_the_concurrency_limit_answers_503_with_retry_after(front: LiveServer) -> None:
    _wait_for(lambda: _closed(front, "faulty"))
    first: list[str] = []
    with front.http() as http, http.stream("POST", "/v1/chat/completions", json={
            "model": "hold", "stream": True,
            "messages": [{"role": "user", "content": "Hi"}]}) as held:
        lines = held.iter_lines()
        first.append(next(line for line in lines if line.startswith("data:")))
        busy = _chat(front, "hold")
        rest = _events(lines)
    assert busy.status_code == 503, busy.text
    assert int(busy.headers["Retry-After"]) >= 1
    assert busy.json()["error"]["code"] == "server_busy"
    assert "max_concurrency" in busy.json()["error"]["message"]
    finishes = [e["choices"][0]["finish_reason"] for e in rest if e.get("choices")]
    assert finishes[-1] == "length" and first  # the held one went on and finished


def test_a_cut_stream_ends_with_a_clean_error_event(front: LiveServer) -> None:
    _wait_for(lambda: _closed(front, "faulty"))
    with front.http() as http, http.stream("POST", "/v1/chat/completions", json={
            "model": "cut", "stream": True, "max_tokens": 50,
            "messages": [{"role": "user", "content": "Hi"}]}) as r:
        assert r.status_code == 200
        events = _events(r.iter_lines())
    text = "".join(e["choices"][0]["delta"].get("content") or ""
                   for e in events if e.get("choices"))
    assert text == "Alpha is first.\nBeta is second.\nGamma is third.\n"
    error = events[-1]["error"]
    assert error["code"] == "upstream_error" and "'faulty'" in error["message"]
    assert "cut the answer off" in error["message"]


def test_a_task_on_a_cut_stream_keeps_its_text_and_says_so(front: LiveServer) -> None:
    _wait_for(lambda: _closed(front, "faulty"))
    body = {"text": "Volcanoes erupt. Magma rises.", "model": "cut", "max_tokens": 40}
    with front.http() as http, http.stream("POST", "/api/tasks/rewrite", json=body) as r:
        assert r.status_code == 200, r.read()
        raw = r.read().decode()
    blocks = [b.splitlines() for b in raw.strip().split("\n\n")]
    kinds = [next((ln[6:].strip() for ln in b if ln.startswith("event:")), "") for b in blocks]
    datas = [json.loads(next(ln[5:] for ln in b if ln.startswith("data:"))) for b in blocks]
    deltas = "".join(d["text"] for k, d in zip(kinds, datas, strict=True) if k == "delta")
    assert "Alpha is first." in deltas  # the client keeps what was streamed
    assert kinds[-1] == "error"
    message = datas[-1]["error"]["message"]
    assert "'faulty'" in message and "partial" in message


def test_upstream_killed_mid_stream_then_requests_fail_over(front: LiveServer,
                                                           victim: LiveServer) -> None:
    with front.http(timeout=120) as http, http.stream("POST", "/v1/chat/completions", json={
            "model": "tiny", "stream": True, "max_tokens": 6000, "logit_bias": NO_EOS,
            "messages": [{"role": "user", "content": "Go on."}]}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [line for line, _ in zip(lines, range(20), strict=False)
               if line.startswith("data:")]
        victim.process.send_signal(signal.SIGKILL)
        events = [json.loads(g[5:]) for g in got] + _events(lines)
    assert events[-1].get("error"), events[-1]
    assert "'victim'" in events[-1]["error"]["message"]
    assert events[-1]["error"]["code"] in ("upstream_error", "upstream_timeout")
    victim.process.wait(10)

    # Down before the request: every request fails over to (or is routed to) the back.
    for _ in range(4):
        r2 = _chat(front, "tiny", logit_bias=NO_EOS)
        assert r2.status_code == 200, r2.text
        assert r2.json()["usage"]["completion_tokens"] == 8
    _wait_for(lambda: _metric(front, "circuit_open", upstream="victim") == 1)
    _wait_for(lambda: _metric(front, "errors_total", upstream="victim", kind="health") >= 1)


def test_the_circuit_breaker_opens_and_closes(front: LiveServer,
                                              faulty: FaultyServer) -> None:
    _wait_for(lambda: _closed(front, "faulty"))
    assert _chat(front, "flaky").status_code == 200
    httpx.post(faulty.url.removesuffix("/v1") + "/control", json={"down": True})
    try:
        _wait_for(lambda: not _closed(front, "faulty"))
        sent = faulty.requests
        r = _chat(front, "flaky")
        assert r.status_code == 503, r.text  # refused here: the upstream is not even asked
        assert faulty.requests == sent and "circuit open" in r.json()["error"]["message"]
        assert "Retry-After" in r.headers
    finally:
        httpx.post(faulty.url.removesuffix("/v1") + "/control", json={"down": False})
    _wait_for(lambda: _closed(front, "faulty"))
    assert _chat(front, "flaky").status_code == 200


def test_metrics_count_requests_errors_tokens_and_latency_per_upstream(
        front: LiveServer) -> None:
    assert _metric(front, "requests_total", upstream="back") >= 5
    assert _metric(front, "tokens_total", upstream="back", direction="out") >= 32
    assert _metric(front, "first_byte_seconds_count", upstream="back") >= 5
    assert _metric(front, "errors_total", upstream="faulty", kind="status_500") >= 2
    assert _metric(front, "errors_total", upstream="faulty", kind="timeout") >= 1
    assert _metric(front, "errors_total", upstream="faulty", kind="status_404") >= 1
    assert _metric(front, "in_flight", upstream="back") == 0
