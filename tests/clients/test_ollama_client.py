"""The official `ollama` Python client, unchanged, against a live LocalLoom server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ollama
import pytest
from server_harness import LiveServer

from conftest import THINKER, TOOLS_MODEL

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                   "required": ["city"], "additionalProperties": False}}}


def _client(server: LiveServer, **kwargs: object) -> ollama.Client:
    # OLLAMA_HOST-style base URL plus the bearer token: the server is never open.
    return ollama.Client(host=server.base_url.rstrip("/"),
                         headers={"Authorization": f"Bearer {server.token}"}, **kwargs)


def test_chat_answers_with_an_assistant_message_and_counts(server: LiveServer) -> None:
    reply = _client(server).chat(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                 options={"num_predict": 8, "seed": 1, "num_ctx": 2048})
    assert reply.message.role == "assistant"
    assert reply.done is True and reply.done_reason in ("stop", "length")
    assert reply.message.content
    assert 0 < (reply.eval_count or 0) <= 8 and (reply.prompt_eval_count or 0) > 0
    assert (reply.total_duration or 0) >= (reply.eval_duration or 0) > 0


def test_chat_stream_yields_deltas_then_one_done_line(server: LiveServer) -> None:
    parts = list(_client(server).chat(model="tiny:latest", stream=True, options={
        "num_predict": 6, "temperature": 0}, messages=[{"role": "user", "content": "Hi"}]))
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content or "" for p in parts[:-1])
    assert parts[-1].eval_count == 6 and parts[-1].done_reason == "length"


def test_same_seed_gives_the_same_text_through_options(server: LiveServer) -> None:
    def ask() -> str:
        reply = _client(server).generate(model="tiny", prompt="Once upon a time",
                                         options={"num_predict": 10, "seed": 7})
        assert reply.response is not None
        return reply.response

    assert ask() == ask()


def test_generate_stream_and_system(server: LiveServer) -> None:
    parts = list(_client(server).generate(model="tiny", prompt="Hello", system="Be brief.",
                                          stream=True,
                                          options={"num_predict": 5, "temperature": 0}))
    assert parts[-1].done and parts[-1].eval_count == 5
    assert "".join(p.response or "" for p in parts)


def test_format_json_gives_parseable_json(server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}},
              "required": ["ok"]}
    reply = _client(server).chat(model="tiny", format=schema, options={"num_predict": 40},
                                 messages=[{"role": "user", "content": "ok?"}])
    assert isinstance(json.loads(reply.message.content or "")["ok"], bool)


def test_tags_list_the_model_with_ollama_fields(server: LiveServer) -> None:
    models = _client(server).list().models
    tiny = next(m for m in models if m.model == "tiny:latest")
    assert tiny.size and tiny.size > 0 and tiny.digest and tiny.modified_at is not None
    assert tiny.details is not None and tiny.details.format == "gguf"


def test_show_names_capabilities_and_context(server: LiveServer) -> None:
    shown = _client(server).show("tiny")
    assert shown.capabilities is not None and "completion" in shown.capabilities
    assert shown.modelinfo is not None
    assert 2048 in shown.modelinfo.values()


def test_ps_serves_ollama_shape_and_localloom_fields(server: LiveServer) -> None:
    _client(server).generate(model="tiny", prompt="x", options={"num_predict": 1})
    running = _client(server).ps().models
    tiny = next(m for m in running if m.model == "tiny:latest")
    assert tiny.expires_at is not None and tiny.size and tiny.context_length
    raw = server.http().get("/api/ps").json()  # LocalLoom's own fields are kept
    mine = next(m for m in raw["models"] if m["name"] == "tiny:latest")
    assert mine["id"] == "tiny" and "idle_for_s" in mine and "active_requests" in mine


def test_embed_returns_one_vector_per_input(server: LiveServer) -> None:
    # The tiny model declares no pooling: a clear 400 says why (an embedding model works).
    with pytest.raises(ollama.ResponseError) as err:
        _client(server).embed(model="tiny", input=["a", "b"])
    assert err.value.status_code == 400 and "pool" in err.value.error.lower()


def test_unknown_model_is_a_404_with_a_hint(server: LiveServer) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        _client(server).chat(model="qwen9:1.7b", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404 and "qwen9:1.7b" in err.value.error


def test_images_are_refused_clearly(server: LiveServer) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        _client(server).chat(model="tiny", messages=[
            {"role": "user", "content": "x", "images": ["aGk="]}])
    assert err.value.status_code == 400 and "images" in err.value.error


def test_think_splits_thinking_from_the_answer(server: LiveServer) -> None:
    client, ask = _client(server), [{"role": "user", "content": "Why?"}]
    opts = {"num_predict": 20, "temperature": 0}
    whole = client.chat(model=THINKER, messages=ask, think=True, options=opts)
    assert whole.message.thinking and "<think>" not in whole.message.thinking
    parts = list(client.chat(model=THINKER, messages=ask, think=True, options=opts,
                             stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == whole.message.thinking
    off = client.chat(model=THINKER, messages=ask, think=False, options=opts)
    assert off.message.thinking is None and off.message.content


def test_tools_and_a_tool_result_reach_the_chat_path(server: LiveServer) -> None:
    # Ollama has no tool_choice, so the tiny model may or may not call: the conversation
    # with a call and its result must be taken, and any call comes back as Ollama's object.
    history: list[Mapping[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {
            "name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 C and sunny", "tool_name": "get_weather"}]
    reply = _client(server).chat(model=TOOLS_MODEL, messages=history, tools=[WEATHER],
                                 options={"num_predict": 30, "seed": 3})
    assert reply.done and (reply.prompt_eval_count or 0) > 30
    for call in reply.message.tool_calls or []:
        assert isinstance(call.function.arguments, dict)


def test_a_request_without_the_token_is_refused(server: LiveServer) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=server.base_url.rstrip("/")).list()
    assert err.value.status_code == 401


def test_version_pull_delete_and_load(server: LiveServer) -> None:
    client = _client(server)
    # ollama-python has no version() call; its raw request helper is untyped
    version = client._request_raw("GET", "/api/version")  # type: ignore[no-untyped-call]
    assert version.json()["version"]
    progress = list(client.pull("tiny", stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    with pytest.raises(ollama.ResponseError) as err:
        client.delete("tiny")  # the user's own file: never deleted
    assert err.value.status_code == 400
    unloaded = client.generate(model="tiny", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert "tiny:latest" not in [m.model for m in client.ps().models]


def test_ollama_errors_have_ollama_shape(server: LiveServer) -> None:
    reply = server.http().post("/api/chat", json={"model": "tiny", "messages": "x"})
    assert reply.status_code == 400 and isinstance(reply.json()["error"], str)
    stream = server.http().post("/api/generate", json={"model": "tiny", "prompt": "a",
                                                       "options": {"num_predict": 2}})
    lines = [json.loads(line) for line in stream.text.splitlines()]
    assert stream.headers["content-type"] == "application/x-ndjson" and lines[-1]["done"]
    raw = server.http().post("/api/generate", json={
        "model": "tiny", "prompt": "abc", "raw": True, "stream": False,
        "options": {"num_predict": 3}}).json()
    # The tiny model's random weights may end the text early (Ollama has no logit_bias).
    assert raw["done"] and 1 <= raw["eval_count"] <= 3 and raw["prompt_eval_count"] > 0
    assert raw["done_reason"] == ("length" if raw["eval_count"] == 3 else "stop")


def test_a_web_page_or_rebound_host_cannot_use_ollama_routes(server: LiveServer) -> None:
    # Ollama's routes sit behind the same token, Origin and Host checks as the rest.
    with server.http() as http:
        chat = {"model": "tiny", "messages": [{"role": "user", "content": "x"}]}
        assert http.post("/api/chat", json=chat,
                         headers={"Origin": "https://evil.example"}).status_code == 403
        assert http.get("/api/tags", headers={"Host": "evil.example"}).status_code in (400, 403)


def test_pull_without_streaming_answers_once(server: LiveServer) -> None:
    assert _client(server).pull("tiny").status == "success"
    with pytest.raises(ollama.ResponseError) as err:
        _client(server).pull("no-such-model")
    assert err.value.status_code == 404


def test_tool_calls_in_the_openai_shape_are_read(server: LiveServer) -> None:
    # LangChain's ChatOllama builds {"type": "function", "id": ..., "function": ...} calls and
    # tool messages with tool_call_id (the Python client strips them; JS clients send them).
    body = {"model": TOOLS_MODEL, "stream": False, "tools": [WEATHER],
            "options": {"num_predict": 2},
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "id": "c1",
                     "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
                {"role": "tool", "content": "Rain", "tool_call_id": "c1"}]}
    reply = server.http().post("/api/chat", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["done"] is True
    bad = {**body, "messages": [{**body["messages"][1], "tool_calls": [
        {"type": "custom", "function": {"name": "get_weather"}}]}]}
    refused = server.http().post("/api/chat", json=bad)
    assert refused.status_code == 400 and "type" in refused.json()["error"]
