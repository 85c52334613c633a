"""Models on demand and the management API: load, progress, keep-alive, cap, unload, status."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from server_harness import MODEL, LiveServer, read_events, start_server


@pytest.fixture(scope="module")
def managed(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with the tiny model under two ids and one model whose file is garbage."""
    broken = tmp_path_factory.mktemp("broken") / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\xff" * 64)
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf, ids=(MODEL, "tiny-b"),
                        extra_models={"broken": broken})
    yield live
    live.stop()


def _chat(server: LiveServer, model: str = MODEL) -> None:
    server.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)


def _loaded(server: LiveServer) -> list[str]:
    with server.http() as http:
        return [m["id"] for m in http.get("/api/ps").json()["models"]]


def _post_events(server: LiveServer, path: str) -> list[tuple[str, dict[str, object]]]:
    with server.http() as http, http.stream("POST", path) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return [(e, json.loads(d)) for e, d in read_events(r.iter_lines())]


def test_first_request_loads_the_model_and_ps_shows_it(managed: LiveServer) -> None:
    with managed.http() as http:
        http.post(f"/api/models/{MODEL}/unload")
    assert MODEL not in _loaded(managed)
    _chat(managed)
    with managed.http() as http:
        ps = http.get("/api/ps").json()
    entry = next(m for m in ps["models"] if m["id"] == MODEL)
    assert entry["active_requests"] == 0
    assert 0 < entry["expires_in_s"] <= ps["keep_alive_s"]
    assert entry["loaded_for_s"] >= 0


def test_load_streams_progress_until_the_bar_is_full(managed: LiveServer) -> None:
    with managed.http() as http:
        http.post("/api/models/tiny-b/unload")
    events = _post_events(managed, "/api/models/tiny-b/load")
    progress = [float(str(d["progress"])) for e, d in events if e == "progress"]
    assert progress and progress == sorted(progress) and progress[-1] == 1.0
    assert events[-1][0] == "done" and events[-1][1]["id"] == "tiny-b"
    assert "tiny-b" in _loaded(managed)


def test_loading_a_corrupt_file_is_an_error_event_and_a_422(managed: LiveServer) -> None:
    events = _post_events(managed, "/api/models/broken/load")
    kind, body = events[-1]
    assert kind == "error"
    assert body["error"]["code"] == "model_load_failed"  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError):
        _chat(managed, "broken")
    _chat(managed)  # the server still works
    assert "broken" not in _loaded(managed)


def test_unknown_model_is_404_before_any_stream(managed: LiveServer) -> None:
    with managed.http() as http:
        for path in ("/api/models/nope/load", "/api/models/nope/pull",
                     "/api/models/nope/unload"):
            r = http.post(path)
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "model_not_found"
        assert http.delete("/api/models/nope").status_code == 404


def test_pull_of_a_local_model_reports_done(managed: LiveServer) -> None:
    events = _post_events(managed, f"/api/models/{MODEL}/pull")
    assert events[-1][0] == "done"
    assert events[-1][1]["cached"] is True


def test_model_list_shows_size_ram_fit_and_cache_state(managed: LiveServer) -> None:
    with managed.http() as http:
        models = {m["id"]: m for m in http.get("/api/models").json()["models"]}
    tiny = models[MODEL]
    assert tiny["cached"] is True
    assert tiny["download_size"] == 500000
    assert tiny["ram"] == "0.1–0.2 GB"
    assert tiny["fit"]["status"] in ("fits", "tight", "does_not_fit")
    assert tiny["fit"]["reason"]
    assert "starter" in {a for m in models.values() for a in m["aliases"]} | set(models)


def test_unload_and_delete_leave_a_users_own_file_alone(managed: LiveServer,
                                                        tiny_gguf: Path) -> None:
    _chat(managed)
    with managed.http() as http:
        r = http.post(f"/api/models/{MODEL}/unload").json()
        assert r["unloaded"] is True
        assert MODEL not in _loaded(managed)
        again = http.post(f"/api/models/{MODEL}/unload").json()
        assert again["unloaded"] is False
        d = http.delete(f"/api/models/{MODEL}").json()
    assert d["deleted"] is False and "never deletes" in d["message"]
    assert tiny_gguf.exists()


def test_status_reports_settings_loaded_models_and_engine_stats(managed: LiveServer) -> None:
    _chat(managed)
    with managed.http() as http:
        status = http.get("/api/status").json()
    assert status["draining"] is False
    assert status["settings"]["max_loaded_models"] == 2
    assert MODEL in [m["id"] for m in status["loaded"]]
    assert status["runtime"][MODEL]["requests_running"] == 0


def test_metrics_count_requests_tokens_latency_and_loaded_models(managed: LiveServer) -> None:
    _chat(managed)
    list(managed.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True))
    with managed.http(auth=False) as http:
        http.get("/api/ps")  # a 401, counted under its route
    with managed.http() as http:
        r = http.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert ('localloom_http_requests_total{route="/v1/chat/completions",method="POST",'
            'status="200"}') in text
    assert 'localloom_http_requests_total{route="/api/ps",method="GET",status="401"}' in text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    assert values[f'localloom_tokens_total{{direction="in",model="{MODEL}"}}'] > 0
    assert values[f'localloom_tokens_total{{direction="out",model="{MODEL}"}}'] >= 5
    assert values[f'localloom_time_to_first_token_seconds_count{{model="{MODEL}"}}'] >= 2
    assert values['localloom_request_duration_seconds_count{route="/v1/chat/completions"}'] >= 2
    assert values["localloom_queue_depth"] == 0
    assert values["localloom_loaded_models"] >= 1
    assert values[f'localloom_model_loaded{{model="{MODEL}"}}'] == 1


def test_idle_model_unloads_after_keep_alive(fresh_home: Path, tiny_gguf: Path) -> None:
    live = start_server(fresh_home, tiny_gguf, env={"LOCALLOOM_KEEP_ALIVE": "1"})
    try:
        _chat(live)
        assert _loaded(live) == [MODEL]
        deadline = time.monotonic() + 5
        while _loaded(live) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _loaded(live) == []
        _chat(live)  # loads again on demand
        assert _loaded(live) == [MODEL]
    finally:
        live.stop()


def test_loading_past_the_cap_evicts_the_least_recently_used(fresh_home: Path,
                                                             tiny_gguf: Path) -> None:
    live = start_server(fresh_home, tiny_gguf, ids=("m-a", "m-b", "m-c"),
                        env={"LOCALLOOM_MAX_LOADED_MODELS": "2"})
    try:
        _chat(live, "m-a")
        _chat(live, "m-b")
        _chat(live, "m-a")  # m-b is now the least recently used
        _chat(live, "m-c")
        assert sorted(_loaded(live)) == ["m-a", "m-c"]
    finally:
        live.stop()
