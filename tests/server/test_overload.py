"""Overload and faults: dropped clients free their slot, a full queue is a 503, SIGTERM drains."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from server_harness import (
    LONG_CTX,
    LONG_TOKENS,
    MODEL,
    NO_EOS,
    LiveServer,
    read_events,
    start_server,
)

# Seconds on the tiny model on any machine, so it holds its slot while tested.
LONG = {"model": MODEL, "messages": [{"role": "user", "content": "go"}],
        "max_tokens": LONG_TOKENS, "logit_bias": NO_EOS}
SHORT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def _runtime(server: LiveServer) -> dict[str, int]:
    with server.http() as http:
        runtime = http.get("/api/status").json()["runtime"].get(MODEL, {})
    return {"running": runtime.get("requests_running", 0),
            "waiting": runtime.get("requests_waiting", 0)}


def _until(predicate: object, timeout: float) -> float:
    """Seconds until predicate() is true; fails after timeout."""
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not reached within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def one_slot(fresh_home: Path, tiny_gguf: Path) -> LiveServer:
    """One decode slot and no waiting room: a second request is busy unless the slot is free."""
    live = start_server(fresh_home, tiny_gguf, env={"LOCALLOOM_N_PARALLEL": "1",
                                                    "LOCALLOOM_MAX_QUEUE": "0", **LONG_CTX})
    yield live  # type: ignore[misc]
    live.stop()


def _short_succeeds(server: LiveServer) -> bool:
    with server.http() as http:
        r = http.post("/v1/chat/completions", json=SHORT)
    assert r.status_code in (200, 503), r.text
    return r.status_code == 200


def test_dropped_stream_frees_the_slot_within_a_second(one_slot: LiveServer) -> None:
    _short_succeeds(one_slot)  # load the model first
    with one_slot.http() as http, http.stream("POST", "/v1/chat/completions",
                                              json={**LONG, "stream": True}) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        for _ in range(5):
            next(lines)
        assert not _short_succeeds(one_slot)  # the slot is taken while the stream runs
    dropped = time.monotonic()  # leaving the blocks closed the connection
    _until(lambda: _short_succeeds(one_slot), timeout=1.0)
    assert time.monotonic() - dropped < 1.0
    assert _runtime(one_slot)["running"] == 0


def test_dropped_non_streaming_request_frees_the_slot_within_a_second(
        one_slot: LiveServer) -> None:
    _short_succeeds(one_slot)
    with one_slot.http(timeout=0.7) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json=LONG)  # the client gives up and hangs up
    dropped = time.monotonic()
    _until(lambda: _short_succeeds(one_slot), timeout=1.0)
    assert time.monotonic() - dropped < 1.0


def test_full_queue_answers_503_with_retry_after_at_once(fresh_home: Path,
                                                         tiny_gguf: Path) -> None:
    live = start_server(fresh_home, tiny_gguf, env={"LOCALLOOM_N_PARALLEL": "1",
                                                    "LOCALLOOM_MAX_QUEUE": "1", **LONG_CTX})
    outcomes: list[int] = []
    try:
        _short_succeeds(live)
        with live.http() as http, http.stream("POST", "/v1/chat/completions",
                                              json={**LONG, "stream": True}) as running:
            assert running.status_code == 200
            waiting = threading.Thread(target=lambda: outcomes.append(_post(live, LONG)))
            waiting.start()
            _until(lambda: _runtime(live)["waiting"] == 1, timeout=5.0)
            start = time.monotonic()
            with live.http() as other:
                r = other.post("/v1/chat/completions", json=SHORT)
            elapsed = time.monotonic() - start
            assert r.status_code == 503
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "server_busy"
            assert elapsed < 1.0  # not after a slot frees up: the running one needs seconds
        waiting.join(60)  # the queued request still completes once the slot is free
        assert outcomes == [200]
    finally:
        live.stop()


def _post(server: LiveServer, body: dict[str, object]) -> int:
    with server.http() as http:
        return http.post("/v1/chat/completions", json={**body, "max_tokens": 20}).status_code


def test_sigterm_finishes_short_streams_cuts_long_ones_and_exits_cleanly(
        fresh_home: Path, tiny_gguf: Path) -> None:
    live = start_server(fresh_home, tiny_gguf, env={"LOCALLOOM_DRAIN_TIMEOUT": "1.5",
                                                    "LOCALLOOM_N_PARALLEL": "2", **LONG_CTX})
    _post(live, SHORT)
    results: dict[str, list[tuple[str, str]]] = {}

    def stream(name: str, max_tokens: int, started: threading.Event) -> None:
        with live.http() as http, http.stream(
                "POST", "/v1/chat/completions",
                json={**LONG, "stream": True, "max_tokens": max_tokens}) as r:
            lines = r.iter_lines()
            first = next(lines)
            started.set()
            results[name] = list(read_events(iter([first, *lines])))

    threads = []
    for name, tokens in (("long", LONG_TOKENS), ("short", 60)):
        started = threading.Event()
        t = threading.Thread(target=stream, args=(name, tokens, started))
        t.start()
        assert started.wait(30)
        threads.append(t)
    live.process.send_signal(15)
    time.sleep(0.3)
    with pytest.raises(httpx.HTTPError), live.http(timeout=2) as http:
        # Refused: no new work once draining (the listener is closed, or a 503).
        http.get("/v1/models").raise_for_status()
    for t in threads:
        t.join(30)
    assert live.process.wait(30) == 0
    assert results["short"][-1] == ("message", "[DONE]")
    last = json.loads(results["long"][-1][1])
    assert last["error"]["code"] == "server_shutting_down"
    assert "Traceback" not in live.logs()
