"""Tool calls and reasoning over HTTP, with the official openai SDK, on a live server.

The server runs tiny models whose chat templates are Qwen 2.5's (tools in the template) and
a thinking one (the prompt opens ``<think>``). The round trip is the one an agent makes: a
forced call, the tool's result sent back, a final answer; streamed calls go through the
SDK's own stream helper, which must reassemble them to the same call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from server_harness import LiveServer, start_server

from localloom.testing import write_tiny_gguf
from localloom.testing.gguf import QWEN25_TOOLS_TEMPLATE, THINKING_TEMPLATE

MODEL = "qwen-tiny"
THINKER = "thinker-tiny"
WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 10},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
CLOCK: Any = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone"]}}}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
OPTS: dict[str, Any] = {"temperature": 0, "max_tokens": 300, "seed": 11}


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with both tiny models (Qwen 2.5's template, and a thinking template)."""
    models = tmp_path_factory.mktemp("models")
    qwen = write_tiny_gguf(models / "qwen.gguf", chat_template=QWEN25_TOOLS_TEMPLATE)
    thinker = write_tiny_gguf(models / "thinker.gguf", chat_template=THINKING_TEMPLATE)
    live = start_server(tmp_path_factory.mktemp("serve"), qwen, ids=(MODEL,),
                        extra_models={THINKER: thinker})
    yield live
    live.stop()


def _weather_args(arguments: str) -> dict[str, Any]:
    args: dict[str, Any] = json.loads(arguments)
    assert set(args) == {"city", "unit"} and len(args["city"]) <= 10
    assert args["unit"] in ("celsius", "fahrenheit")
    return args


def test_openai_sdk_round_trip_call_result_and_final_answer(tools_server: LiveServer) -> None:
    client = tools_server.client()
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER],
                                           tool_choice="required", **OPTS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.function.name == "get_weather"  # type: ignore[union-attr]
    _weather_args(call.function.arguments)  # type: ignore[union-attr]

    history = [*ASK, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}]
    final = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER],
                                           tool_choice="none", **{**OPTS, "max_tokens": 12})
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content


def test_named_tool_choice_over_http_calls_that_function(tools_server: LiveServer) -> None:
    r = tools_server.client().chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, **OPTS)
    calls = r.choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["get_time"]  # type: ignore[union-attr]
    zone = json.loads(calls[0].function.arguments)["zone"]  # type: ignore[union-attr]
    assert isinstance(zone, int) and -12 <= zone <= 14


def test_sdk_stream_helper_reassembles_the_same_call(tools_server: LiveServer) -> None:
    client = tools_server.client()
    whole = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER],
                                           tool_choice="required", **OPTS)
    argument_deltas = 0
    with client.chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER],
                                        tool_choice="required", **OPTS) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                argument_deltas += 1
        final = stream.get_final_completion()
    streamed = final.choices[0]
    expected = whole.choices[0].message.tool_calls
    assert streamed.finish_reason == "tool_calls" and expected is not None
    assert streamed.message.tool_calls is not None and len(streamed.message.tool_calls) == 1
    got = streamed.message.tool_calls[0]
    assert got.function.name == expected[0].function.name  # type: ignore[union-attr]
    assert got.function.arguments == expected[0].function.arguments  # type: ignore[union-attr]
    _weather_args(got.function.arguments)
    assert argument_deltas > 2  # the arguments arrived in pieces


def test_raw_stream_chunks_carry_index_id_and_name_first(tools_server: LiveServer) -> None:
    pieces: list[Any] = []
    for chunk in tools_server.client().chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", stream=True,
            **OPTS):
        for choice in chunk.choices:
            pieces += choice.delta.tool_calls or []
    assert pieces[0].index == 0 and pieces[0].id and pieces[0].type == "function"
    assert pieces[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert all(p.index == 0 and p.id is None and p.function.name is None  # type: ignore[union-attr]
               for p in pieces[1:])


def test_reasoning_is_split_from_the_answer_stream_and_whole(tools_server: LiveServer) -> None:
    client = tools_server.client()
    opts = {**OPTS, "max_tokens": 20}
    whole = client.chat.completions.create(model=THINKER, messages=ASK, **opts)
    message: Any = whole.choices[0].message
    assert message.reasoning_content and "<think>" not in message.reasoning_content
    reasoning = ""
    for chunk in client.chat.completions.create(model=THINKER, messages=ASK, stream=True,
                                                **opts):
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
    assert reasoning == message.reasoning_content
    off = client.chat.completions.create(model=THINKER, messages=ASK, reasoning_effort="none",
                                         **opts).choices[0].message
    assert getattr(off, "reasoning_content", None) is None and off.content


def test_tool_schema_with_a_huge_bound_is_refused(tools_server: LiveServer) -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "maxLength": 100_000}}}}}
    with tools_server.http() as http:
        r = http.post("/v1/chat/completions", json={
            "model": MODEL, "messages": ASK, "tools": [bad], "tool_choice": "required"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "tools"
    assert "tools[0].function.parameters" in r.json()["error"]["message"]


