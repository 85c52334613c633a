"""A second `localloom serve` as the upstream of a front server: chat, stream, completions,
tasks (one call and a map-reduce fanned out) and history, through the openai SDK and HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import LiveServer
from upstream_harness import start_front, token_file, upstream_table

NO_EOS = {"2": -100}  # the tiny model's end-of-text: banned where a length is asserted


@pytest.fixture(scope="module")
def front(back: LiveServer, tiny_gguf: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The front: discovers the back's models; a small context so tasks split long texts."""
    table = upstream_table("back", back.base_url, api_key_file=token_file(back), n_ctx=512)
    live = start_front(tmp_path_factory.mktemp("front"), tiny_gguf, [table])
    yield live
    live.stop()


def _events(raw: str) -> list[tuple[str, Any]]:
    out = []
    for block in raw.strip().split("\n\n"):
        lines = block.splitlines()
        event = next((ln[6:].strip() for ln in lines if ln.startswith("event:")), "message")
        data = "\n".join(ln[5:].strip() for ln in lines if ln.startswith("data:"))
        out.append((event, json.loads(data)))
    return out


def test_remote_models_are_listed_and_marked(front: LiveServer) -> None:
    cards = {m.id: m for m in front.client().models.list().data}
    assert cards["tiny"].model_extra is not None
    assert cards["tiny"].model_extra["remote"] == "back"
    assert cards["local-tiny"].model_extra is not None
    assert cards["local-tiny"].model_extra["remote"] is None
    with front.http() as http:
        one = http.get("/v1/models/tiny").json()
        catalog = {m["id"]: m for m in http.get("/api/models").json()["models"]}
    assert one["remote"] == "back" and one["owned_by"] == "upstream"
    assert catalog["tiny"]["remote"] == "back" and catalog["tiny"]["runtime_context"] == 512
    assert catalog["local-tiny"]["remote"] is None


def test_chat_through_the_front_matches_the_upstream(front: LiveServer,
                                                     back: LiveServer) -> None:
    ask: dict[str, Any] = {"model": "tiny", "max_tokens": 12, "temperature": 0,
                           "logit_bias": NO_EOS,
                           "messages": [{"role": "user", "content": "Say hello."}]}
    via_front = front.client().chat.completions.create(**ask)
    direct = back.client().chat.completions.create(**ask)
    assert via_front.model == "tiny"
    assert via_front.choices[0].finish_reason == "length"
    assert via_front.choices[0].message.content == direct.choices[0].message.content
    assert via_front.usage is not None and direct.usage is not None
    assert via_front.usage.completion_tokens == 12
    assert via_front.usage.prompt_tokens == direct.usage.prompt_tokens


def test_stream_passes_chunks_and_usage(front: LiveServer) -> None:
    ask: dict[str, Any] = {"model": "tiny", "max_tokens": 16, "temperature": 0,
                           "logit_bias": NO_EOS,
                           "messages": [{"role": "user", "content": "Count."}]}
    whole = front.client().chat.completions.create(**ask)
    chunks = list(front.client().chat.completions.create(
        **ask, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


def test_completions_and_a_stop_string(front: LiveServer) -> None:
    whole = front.client().completions.create(model="tiny", prompt="Once upon", max_tokens=10,
                                              temperature=0, logit_bias=NO_EOS)
    assert whole.usage is not None and whole.usage.completion_tokens == 10
    text = whole.choices[0].text
    stop = next(ch for ch in text[1:] if ch.strip())  # random text: any visible character
    cut = front.client().completions.create(model="tiny", prompt="Once upon", max_tokens=10,
                                            temperature=0, logit_bias=NO_EOS, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[:text.index(stop)]


def test_summarize_task_runs_remotely_and_is_saved_on_the_front(front: LiveServer,
                                                                back: LiveServer) -> None:
    body = {"text": "Volcanoes on Iceland erupt often. Magma rises through the cracks.",
            "model": "tiny", "save": True, "max_tokens": 16, "seed": 3}
    with front.http() as http, http.stream("POST", "/api/tasks/summarize", json=body) as r:
        assert r.status_code == 200, r.read()
        events = _events(r.read().decode())
    assert events[-1][0] == "done", events
    done = events[-1][1]
    assert done["model"] == "tiny" and done["usage"]["prompt_tokens"] > 0
    with front.http() as http:
        record = http.get(f"/api/history/{done['saved_id']}").json()
    assert record["model"] == "tiny" and record["result"] == done["text"]
    with back.http() as http:  # the upstream only generated; nothing saved there
        assert http.get("/api/history").json()["results"] == []


def test_map_reduce_fans_out_over_the_upstream(front: LiveServer) -> None:
    paragraph = ("The river floods every spring and the farmers move their sheep to the "
                 "hills, where the grass grows late. ")
    text = "\n\n".join(paragraph * 3 for _ in range(12))  # far past a 512-token context
    body = {"text": text, "model": "tiny", "max_tokens": 12, "seed": 5}
    with front.http(timeout=300) as http, \
            http.stream("POST", "/api/tasks/summarize", json=body) as r:
        assert r.status_code == 200, r.read()
        events = _events(r.read().decode())
    assert events[-1][0] == "done", events[-3:]
    done = events[-1][1]
    assert done["chunks"] > 2 and done["calls"] > done["chunks"]  # maps, then the reduce
    assert any(kind == "progress" for kind, _ in events)
    with front.http() as http:
        metrics = http.get("/metrics").text
    requests = next(line for line in metrics.splitlines()
                    if line.startswith('localloom_upstream_requests_total{upstream="back"}'))
    assert int(requests.split()[-1]) >= done["calls"]


def test_tool_calls_are_refused_clearly_for_a_remote_model(front: LiveServer) -> None:
    with front.http() as http:
        r = http.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "tools"
    assert "upstream" in r.json()["error"]["message"]
