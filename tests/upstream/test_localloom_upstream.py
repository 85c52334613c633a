"""A second `localloom serve` as the upstream of a front server: chat, stream, completions,
tasks (one call and a map-reduce fanned out) and history, through the openai SDK and HTTP."""

from __future__ import annotations

import json
import threading
import time
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


def test_ollama_tags_list_remote_models_marked(front: LiveServer) -> None:
    with front.http() as http:
        tags = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    assert tags["tiny"]["remote"] == "back" and tags["tiny"]["size"] == 0
    assert tags["tiny"]["details"]["family"]
    assert "remote" not in tags["local-tiny:latest"]


def test_ollama_show_describes_a_remote_model(front: LiveServer) -> None:
    with front.http() as http:
        shown = http.post("/api/show", json={"model": "tiny:latest"})
    assert shown.status_code == 200, shown.text
    assert shown.json()["remote"] == "back" and shown.json()["parameters"] == "num_ctx 512"
    assert "tools" in shown.json()["capabilities"]


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


CLOCK: Any = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone"]}}}
FORCE_CLOCK: Any = {"type": "function", "function": {"name": "get_time"}}
ASK_TIME: Any = [{"role": "user", "content": "What time is it in Paris?"}]


def test_a_forced_tool_call_comes_back_through_the_front(front: LiveServer,
                                                         back: LiveServer) -> None:
    ask: dict[str, Any] = {"model": "tiny", "messages": ASK_TIME, "tools": [CLOCK],
                           "tool_choice": FORCE_CLOCK, "temperature": 0, "max_tokens": 300}
    via_front = front.client().chat.completions.create(**ask)
    direct = back.client().chat.completions.create(**ask)
    choice = via_front.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls, expected = choice.message.tool_calls, direct.choices[0].message.tool_calls
    assert calls is not None and expected is not None and len(calls) == len(expected) == 1
    assert calls[0].function.name == "get_time"  # type: ignore[union-attr]
    assert calls[0].function.arguments == expected[0].function.arguments  # type: ignore[union-attr]
    assert -12 <= json.loads(calls[0].function.arguments)["zone"] <= 14  # type: ignore[union-attr]
    assert calls[0].id.startswith("call_")


def test_a_streamed_tool_call_reassembles_through_the_sdk(front: LiveServer) -> None:
    ask: dict[str, Any] = {"model": "tiny", "messages": ASK_TIME, "tools": [CLOCK],
                           "tool_choice": FORCE_CLOCK, "temperature": 0, "max_tokens": 300}
    whole = front.client().chat.completions.create(**ask)
    pieces = 0
    with front.client().chat.completions.stream(**ask) as stream:
        for event in stream:
            pieces += event.type == "tool_calls.function.arguments.delta"
        final = stream.get_final_completion()
    got, expected = final.choices[0].message.tool_calls, whole.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert got is not None and expected is not None and len(got) == 1
    assert got[0].function.name == "get_time"
    assert got[0].function.arguments == expected[0].function.arguments  # type: ignore[union-attr]
    assert pieces >= 2  # the upstream's argument pieces came through as pieces


def test_the_responses_api_gives_a_function_call_item(front: LiveServer) -> None:
    with front.http() as http:
        responses = http.post("/v1/responses", json={
            "model": "tiny", "input": ASK_TIME[0]["content"], "temperature": 0,
            "max_output_tokens": 300, "tools": [{"type": "function", "name": "get_time",
                                                 "parameters": CLOCK["function"]["parameters"]}],
            "tool_choice": {"type": "function", "name": "get_time"}}).json()
    outputs = [o for o in responses["output"] if o["type"] == "function_call"]
    assert len(outputs) == 1, responses
    assert outputs[0]["name"] == "get_time" and "zone" in json.loads(outputs[0]["arguments"])


def test_ollama_folds_a_remote_call_into_its_message_shape(back: LiveServer) -> None:
    # Ollama's API has no tool_choice (the tiny model calls a tool only when forced), so the
    # engine's stream from the upstream goes straight into the Ollama answer builder.
    from localloom import Engine
    from localloom.server.ollama.service import _Run
    from localloom.upstream import UpstreamConfig

    config = UpstreamConfig(name="back", url=back.base_url, api_key_file=token_file(back))
    run = _Run(name="tiny", chat=True)
    with Engine(upstream=[config]) as engine:
        for chunk in engine.chat.completions.create(
                model="tiny", messages=ASK_TIME, tools=[CLOCK], tool_choice=FORCE_CLOCK,
                temperature=0, max_tokens=300, stream=True):
            run.take(chunk)
    run.finish_calls()
    message = run.line("", done=True)["message"]
    assert run.done_reason == "stop"  # Ollama's: the calls are in the message
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_time"]
    assert isinstance(message["tool_calls"][0]["function"]["arguments"]["zone"], int)


def test_ollama_chat_serves_a_remote_model(front: LiveServer) -> None:
    with front.http() as http:
        r = http.post("/api/chat", json={
            "model": "tiny:latest", "messages": ASK_TIME, "tools": [CLOCK], "stream": False,
            "options": {"temperature": 0, "num_predict": 8}})
    assert r.status_code == 200, r.text
    assert r.json()["message"]["role"] == "assistant" and r.json()["eval_count"] <= 8


def test_logprobs_with_two_alternatives_per_token(front: LiveServer, back: LiveServer) -> None:
    ask: dict[str, Any] = {"model": "tiny", "max_tokens": 6, "temperature": 0,
                           "logit_bias": NO_EOS, "logprobs": True, "top_logprobs": 2,
                           "messages": [{"role": "user", "content": "Hi."}]}
    via_front = front.client().chat.completions.create(**ask)
    direct = back.client().chat.completions.create(**ask)
    got = via_front.choices[0].logprobs
    assert got is not None and got.content is not None and len(got.content) == 6
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in got.content)
    assert "".join(t.token for t in got.content) == via_front.choices[0].message.content
    assert direct.choices[0].logprobs is not None
    expected = direct.choices[0].logprobs.content or []
    assert [(t.token, t.bytes, [a.token for a in t.top_logprobs]) for t in got.content] == \
        [(t.token, t.bytes, [a.token for a in t.top_logprobs]) for t in expected]
    # the same numbers up to float noise between two runs of the upstream
    assert [t.logprob for t in got.content] == \
        pytest.approx([t.logprob for t in expected], abs=1e-3)
    chunks = list(front.client().chat.completions.create(**ask, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content or []]
    assert [t.token for t in streamed] == [t.token for t in got.content]


def test_completion_logprobs_come_back_in_the_legacy_shape(front: LiveServer) -> None:
    r = front.client().completions.create(model="tiny", prompt="Once upon", max_tokens=5,
                                          temperature=0, logit_bias=NO_EOS, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and len(lp.tokens) == 5
    assert lp.top_logprobs is not None and all(len(t) <= 2 for t in lp.top_logprobs)
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(5)]


def test_sampling_fields_reach_the_upstream(front: LiveServer, back: LiveServer) -> None:
    ask: dict[str, Any] = {"model": "tiny", "max_tokens": 8, "temperature": 0.9, "seed": 7,
                           "logit_bias": NO_EOS, "presence_penalty": 0.5, "n": 2,
                           "extra_body": {"top_k": 5},
                           "response_format": {"type": "json_object"},
                           "messages": [{"role": "user", "content": "Some JSON."}]}
    via_front = front.client().chat.completions.create(**ask)
    direct = back.client().chat.completions.create(**ask)
    assert [c.message.content for c in via_front.choices] == \
        [c.message.content for c in direct.choices]
    assert len(via_front.choices) == 2 and via_front.choices[0].message.content
    assert via_front.choices[0].message.content.lstrip()[:1] in ("{", "[", '"')


def test_deterministic_is_refused_for_a_remote_model(front: LiveServer) -> None:
    with front.http() as http:
        r = http.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "x"}],
            "deterministic": True})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "deterministic"
    assert "upstream" in r.json()["error"]["message"]


def _back_active(back: LiveServer) -> int:
    with back.http() as http:
        models = http.get("/api/ps").json()["models"]
    return sum(m["active_requests"] for m in models)


def _wait_idle(back: LiveServer) -> None:
    deadline = time.monotonic() + 20
    while _back_active(back) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _back_active(back) == 0  # the closed stream stopped the upstream's generation


def test_interrupt_stops_a_remote_stream_like_a_local_one(back: LiveServer) -> None:
    from localloom import Engine
    from localloom.errors import GenerationInterrupted
    from localloom.upstream import UpstreamConfig

    config = UpstreamConfig(name="back", url=back.base_url, api_key_file=token_file(back))
    long: dict[str, Any] = {"model": "tiny", "max_tokens": 4000, "logit_bias": NO_EOS,
                            "messages": [{"role": "user", "content": "Go on."}]}
    with Engine(upstream=[config]) as engine:
        stream = engine.chat.completions.create(**long, stream=True)
        texts = []
        with pytest.raises(GenerationInterrupted, match=r"\(engine\.interrupt\)"):
            for chunk in stream:
                texts.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
                if len(texts) == 3:
                    engine.interrupt("tiny")
        assert 3 <= len(texts) < 4000
        _wait_idle(back)

        failed: list[BaseException] = []

        def whole() -> None:
            try:
                engine.chat.completions.create(**long)
            except BaseException as exc:
                failed.append(exc)

        worker = threading.Thread(target=whole)
        worker.start()
        deadline = time.monotonic() + 20
        while not _back_active(back) and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.interrupt()  # every model, local and remote
        worker.join(20)
        assert not worker.is_alive()
        assert len(failed) == 1 and isinstance(failed[0], GenerationInterrupted)
        _wait_idle(back)


def test_reasoning_comes_back_as_reasoning_content(front: LiveServer, back: LiveServer) -> None:
    ask: dict[str, Any] = {"model": "thinker-tiny", "max_tokens": 12, "temperature": 0,
                           "logit_bias": NO_EOS,
                           "messages": [{"role": "user", "content": "Think."}]}
    via_front = front.client().chat.completions.create(**ask).choices[0].message
    direct = back.client().chat.completions.create(**ask).choices[0].message
    thought = (via_front.model_extra or {}).get("reasoning_content")
    assert thought and thought == (direct.model_extra or {}).get("reasoning_content")
    assert via_front.content == direct.content
    chunks = list(front.client().chat.completions.create(**ask, stream=True))
    streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                       for c in chunks if c.choices)
    assert streamed == thought
    with front.http() as http:  # Ollama's name for it: thinking
        ollama = http.post("/api/chat", json={
            "model": "thinker-tiny", "messages": ask["messages"], "stream": False,
            "options": {"temperature": 0, "num_predict": 12}}).json()
    assert ollama["message"].get("thinking"), ollama


def test_a_field_the_upstream_refuses_is_a_400_with_its_reason(front: LiveServer) -> None:
    with front.http() as http:  # token ids are the upstream model's: it checks them
        r = http.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "x"}],
            "logit_bias": {"9999999": 5}})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "Upstream 'back'" in message and "9999999" in message
