"""Requests that crashed or froze the server (issue 11, items 1, 2 and 5), written afresh.

Each attack runs against a live `localloom serve` while a watcher asks `/health` every 50 ms:
the server must refuse or survive the request, keep answering `/health` within a second
throughout, and stay alive. A hypothesis target sends random response_format schemas, stop
lists and logit_bias maps with a fixed budget.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from request_figures import (
    R_BODY,
    R_FIELDS,
    R_FUZZ,
    R_HEADERS,
    R_LOGS,
    R_MESSAGES,
    R_REPEAT,
    R_SMALL,
    R_TOKENS,
    REQUESTS,
)

from server.server_harness import MODEL, LiveServer, start_server

HEALTH_LIMIT_S = 1.0
_FIGURES: dict[str, list[str]] = {}


def _note(row: str, text: str) -> None:
    """Add a figure to a row and rewrite the table (each test adds its own)."""
    _FIGURES.setdefault(row, []).append(text)
    REQUESTS.record({row: "; ".join(_FIGURES[row])})


class HealthWatch:
    """Polls /health in a thread; the slowest answer and any failure are kept."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.slowest = 0.0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=10) as http:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    if http.get("/health").status_code != 200:
                        self.failures.append("status")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self.slowest = max(self.slowest, time.perf_counter() - t0)
                self._stop.wait(0.05)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        assert not self.failures, self.failures
        assert self.slowest < HEALTH_LIMIT_S, f"/health took {self.slowest:.2f} s"
        assert self.server.process.poll() is None, "the server died"


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("attacks"), tiny_gguf,
                        env={"LOCALLOOM_N_CTX": "2048", "LOCALLOOM_N_PARALLEL": "4"})
    with live.http() as http:  # loaded before the first attack
        assert http.post("/v1/completions", json={"model": MODEL, "prompt": "hi",
                                                  "max_tokens": 1}).status_code == 200
    yield live
    assert live.stop() == 0


def _post(server: LiveServer, path: str, body: dict[str, Any], *,
          timeout: float = 120) -> tuple[httpx.Response, float, HealthWatch]:
    """POST ``body`` while watching /health. The body is encoded before the watch starts:
    encoding 13 MB holds this process's interpreter lock, which would stall the watcher."""
    content = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    with server.http(timeout=timeout) as http, HealthWatch(server) as watch:
        t0 = time.perf_counter()
        r = http.post(path, content=content, headers=headers)
        took = time.perf_counter() - t0
    return r, took, watch


def _schema_request(schema: dict[str, Any]) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 8,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": schema}}}


@pytest.mark.parametrize("pattern", ["^a{0,30_000}$", "^a{0,+30000}$", "^a{,30000}$",
                                     "^(ab){ 0 , 25000 }$", "^a{30000}$"])
def test_huge_repetitions_however_spelled_are_refused_and_the_server_lives(
        server: LiveServer, pattern: str) -> None:
    r, took, watch = _post(server, "/v1/chat/completions",
                           _schema_request({"type": "string", "pattern": pattern}))
    watch.check()
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "response_format"
    _note(R_REPEAT, f"`{pattern}`: 400 in {took * 1000:.0f} ms, /health at most "
                    f"{watch.slowest * 1000:.0f} ms")


def test_a_schema_of_thousands_of_bounded_fields_is_refused_at_once(server: LiveServer) -> None:
    schema = {"type": "object", "properties": {
        f"p{i}": {"type": "string", "maxLength": 1000} for i in range(4000)}}
    r, took, watch = _post(server, "/v1/chat/completions", _schema_request(schema))
    watch.check()
    assert r.status_code == 400 and "adding up" in r.json()["error"]["message"]
    assert took < 5, took
    _note(R_FIELDS, f"4,000 properties × maxLength 1000: 400 in {took * 1000:.0f} ms (before: "
                    f"/health blocked 11.5 s); /health at most {watch.slowest * 1000:.0f} ms")


@pytest.mark.parametrize("lines", [40_000, 200_000])
def test_a_prompt_the_tokenizer_is_quadratic_on_is_refused_quickly(
        server: LiveServer, lines: int) -> None:
    r, took, watch = _post(server, "/v1/completions",
                           {"model": MODEL, "prompt": "a\n" * lines, "max_tokens": 4})
    watch.check()
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert took < 5, f"{took:.1f} s (before: 20.5 s for 40,000 lines)"
    _note(R_TOKENS, f"{lines:,} lines: 400 `context_length_exceeded` in {took * 1000:.0f} ms "
                    f"(40,000 took 20.5 s before), /health at most {watch.slowest * 1000:.0f} ms")


def test_400_000_one_character_messages_are_refused_without_freezing(
        server: LiveServer) -> None:
    messages = [{"role": "user", "content": "a"}] * 400_000
    r, took, watch = _post(server, "/v1/chat/completions",
                           {"model": MODEL, "messages": messages, "max_tokens": 4})
    watch.check()
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    _note(R_MESSAGES, f"400,000 messages: 400 in {took * 1000:.0f} ms, /health at most "
                      f"{watch.slowest * 1000:.0f} ms (froze > 16 min before)")
    # Fewer messages than the cap but more than the context holds: refused by count.
    many = [{"role": "user", "content": "a"}] * 5_000
    r, took, watch = _post(server, "/v1/chat/completions",
                           {"model": MODEL, "messages": many, "max_tokens": 4})
    watch.check()
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    _note(R_MESSAGES, f"5,000 messages in a 2,048-token context: 400 in {took * 1000:.0f} ms")


def test_requests_still_answer_after_the_attacks(server: LiveServer) -> None:
    with server.http() as http:
        r = http.post("/v1/completions", json={"model": MODEL, "prompt": "hello",
                                               "max_tokens": 4})
    assert r.status_code == 200


# --------------------------------------------------------------------------- fuzz target

_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # typed: hypothesis takes category literals
_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=_SURROGATES), max_size=6)
_BOUND = st.one_of(st.integers(-5, 40), st.integers(900, 100_000), st.floats(allow_nan=True))
_QUANT = st.sampled_from(["{0,30_000}", "{,30000}", "{0,+300}", "{2}", "*", "+", "{3,1}",
                          "{1,", "{99999999999}", "?"])


def _schemas() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.fixed_dictionaries({"type": st.just("string")},
                              optional={"maxLength": _BOUND, "minLength": _BOUND,
                                        "pattern": st.builds(lambda a, q: f"^{a}{q}$",
                                                             st.sampled_from(["a", "(ab)",
                                                                              "[0-9]", "."]),
                                                             _QUANT)}),
        st.fixed_dictionaries({"type": st.sampled_from(["integer", "number", "boolean"])},
                              optional={"minimum": _BOUND, "maximum": _BOUND}),
        st.fixed_dictionaries({"enum": st.lists(_NAMES, min_size=1, max_size=30)}),
        st.just({}), st.just({"type": "nonsense"}), st.just({"$ref": "#/nowhere"}))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.fixed_dictionaries({"type": st.just("array"), "items": inner},
                              optional={"maxItems": _BOUND, "minItems": _BOUND}),
        st.fixed_dictionaries({"type": st.just("object"),
                               "properties": st.dictionaries(_NAMES, inner, max_size=5)},
                              optional={"required": st.lists(_NAMES, max_size=3)}),
        st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)})),
        max_leaves=12)


_REQUESTS = st.fixed_dictionaries({}, optional={
    "response_format": st.one_of(
        st.builds(lambda s: {"type": "json_schema", "json_schema": {"name": "f", "schema": s}},
                  _schemas()),
        st.just({"type": "json_object"}), st.just({"type": "bogus"})),
    "stop": st.one_of(st.none(), _NAMES, st.lists(_NAMES, max_size=6),
                      st.lists(st.text(max_size=300), max_size=3)),
    "logit_bias": st.dictionaries(
        st.one_of(st.integers(-10, 400), st.integers(-2**40, 2**40).map(str), _NAMES),
        st.one_of(st.floats(-200, 200), st.floats(allow_nan=True), st.integers(-10**9, 10**9)),
        max_size=6),
})


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(extra=_REQUESTS)
def test_fuzzed_schemas_stop_lists_and_logit_bias_get_200_or_400(
        server: LiveServer, extra: dict[str, Any]) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 6,
            "temperature": 0, **extra}
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(server.http(timeout=60))
        r = http.post("/v1/chat/completions", content=json.dumps(body, allow_nan=True),
                      headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400), (r.status_code, r.text[:500])
    if r.status_code == 400:
        assert r.json()["error"]["message"]
    assert server.process.poll() is None
    _FUZZ_STATUS[r.status_code] = _FUZZ_STATUS.get(r.status_code, 0) + 1
    REQUESTS.record({R_FUZZ: f"{sum(_FUZZ_STATUS.values())} requests: "
                             + ", ".join(f"{n} × {code}" for code, n in
                                         sorted(_FUZZ_STATUS.items()))
                             + "; 0 5xx, the server alive after each"})


_FUZZ_STATUS: dict[int, int] = {}


# --------------------------------------------------------------------------- slow clients


@pytest.fixture(scope="module")
def small_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[LiveServer]:
    """64 requests in flight at most (1 slot, no queue), 3 s for a body or for headers."""
    live = start_server(tmp_path_factory.mktemp("slow"), tiny_gguf, env={
        "LOCALLOOM_N_PARALLEL": "1", "LOCALLOOM_MAX_QUEUE": "0",
        "LOCALLOOM_BODY_TIMEOUT": "3", "LOCALLOOM_HEADER_TIMEOUT": "3"})
    yield live
    assert live.stop() == 0


def _open(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing, or None if it kept the socket open."""
    sock.settimeout(within)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except TimeoutError:
        return None
    except OSError:
        return data


def test_slow_bodies_do_not_take_the_in_flight_places_and_are_cut_off(
        small_server: LiveServer) -> None:
    port, token = small_server.port, small_server.token
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n{").encode()
    slow = [_open(port, head) for _ in range(80)]  # more than the 64 places in flight
    try:
        with HealthWatch(small_server) as watch, small_server.http() as http:
            for sock in slow[:10]:
                sock.sendall(b" ")  # trickling
            r = http.post("/v1/completions", json={"model": MODEL, "prompt": "hi",
                                                   "max_tokens": 2})
            assert r.status_code == 200, r.text  # not 503: trickling bodies hold no place
            replies = [_closed_by_server(sock, 10) for sock in slow]
        watch.check()
    finally:
        for sock in slow:
            sock.close()
    assert all(reply is not None for reply in replies), "the server kept slow sockets open"
    assert all(b" 408 " in (reply or b"")[:20] for reply in replies), replies[0]
    assert b"request_timeout" in (replies[0] or b"")
    REQUESTS.record({R_BODY: "80 sockets trickling 100 KB bodies at a server with 64 places in "
                             "flight: a request beside them answered 200; all 80 got 408 "
                             "`request_timeout` and were closed (3 s body timeout in the "
                             f"test); /health at most {watch.slowest * 1000:.0f} ms"})


def test_slowloris_headers_are_closed_after_the_header_timeout(
        small_server: LiveServer) -> None:
    port = small_server.port
    slow = [_open(port, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
            for _ in range(50)]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(10)]
    try:
        start = time.monotonic()
        closed = [_closed_by_server(sock, 10) for sock in slow + idle]
        took = time.monotonic() - start
    finally:
        for sock in slow + idle:
            sock.close()
    assert all(reply is not None for reply in closed), "slow sockets stayed open"
    assert took < 10
    REQUESTS.record({R_HEADERS: f"50 sockets trickling headers and 10 silent ones: all closed "
                                f"by the server within {took:.1f} s (3 s header timeout in the "
                                "test; 0 of 200 were ever closed before)"})
    with small_server.http() as http:
        assert http.get("/v1/models").status_code == 200


@pytest.mark.parametrize(("label", "head"), [
    ("a 100 KB URL", "GET /v1/models?" + "a" * 100_000 + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("a bad Content-Length", "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Content-Length: twelve\r\n\r\n"),
])
def test_requests_that_do_not_parse_get_openai_json_errors(
        server: LiveServer, label: str, head: str) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(head.encode())
        reply = _closed_by_server(sock, 10) or b""
    finally:
        sock.close()
    status, _, rest = reply.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 400"), (label, reply[:200])
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"application/json" in headers
    assert json.loads(body)["error"]["code"] == "bad_request"
    _note(R_SMALL, f"{label}: JSON 400 `bad_request`")


def test_log_lines_from_a_request_are_cut_short(server: LiveServer) -> None:
    before = len(server.logs())
    schema = {"type": "string", "pattern": "^" + "(ab)" * 50_000 + "{0,30000}$"}
    r, _, _ = _post(server, "/v1/chat/completions", _schema_request(schema))
    assert r.status_code == 400
    added = len(server.logs()) - before
    assert added < 20_000, f"the log grew by {added} characters"
    REQUESTS.record({R_LOGS: f"a 200 KB pattern that fails: the log grew by {added:,} "
                             "characters (an 18.9 KB request added 2.3 MB before)"})
