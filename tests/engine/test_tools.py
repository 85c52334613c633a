"""Tool calls and reasoning through the library, on tiny real models with Qwen templates.

The tiny models write random text, so what a test can rely on is what LocalLoom makes of
it: a forced call ("required" or a named function) always parses and fits the function's
schema, the history with calls and results renders through the template, streamed pieces
reassemble to the whole answer, and reasoning opened by the template lands in
``reasoning_content``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import make_settings

from localloom import InvalidRequestError
from localloom.engine import Engine
from localloom.testing import write_tiny_gguf
from localloom.testing.gguf import QWEN25_TOOLS_TEMPLATE, THINKING_TEMPLATE

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
OPTS: dict[str, Any] = {"temperature": 0, "max_tokens": 300, "seed": 7}


def _engine(path: Path, home: Path) -> Iterator[Engine]:
    with Engine(make_settings(home, n_ctx=4096, n_parallel=2)) as eng:
        eng.reload(str(path))
        yield eng


@pytest.fixture(scope="module")
def tools_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The tiny model with Qwen 2.5's chat template (which takes ``tools``)."""
    path = write_tiny_gguf(tmp_path_factory.mktemp("m") / "qwen-tools.gguf",
                           chat_template=QWEN25_TOOLS_TEMPLATE)
    yield from _engine(path, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def thinking_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The tiny model with a thinking template (the prompt opens ``<think>``)."""
    path = write_tiny_gguf(tmp_path_factory.mktemp("m") / "thinking.gguf",
                           chat_template=THINKING_TEMPLATE)
    yield from _engine(path, tmp_path_factory.mktemp("home"))


def _check_weather_args(arguments: str) -> dict[str, Any]:
    args: dict[str, Any] = json.loads(arguments)
    assert set(args) == {"city", "unit"}
    assert isinstance(args["city"], str) and len(args["city"]) <= 12
    assert args["unit"] in ("celsius", "fahrenheit")
    return args


def test_required_tool_choice_always_gets_a_call_that_fits_the_schema(
        tools_engine: Engine) -> None:
    for seed in (1, 2, 3):
        r = tools_engine.chat.completions.create(
            messages=ASK, tools=[WEATHER], tool_choice="required",
            **{**OPTS, "seed": seed, "temperature": 0.8})
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        calls = choice.message.tool_calls
        assert calls is not None and len(calls) == 1
        assert calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
        _check_weather_args(calls[0].function.arguments)


def test_named_tool_choice_calls_that_function_among_several(tools_engine: Engine) -> None:
    r = tools_engine.chat.completions.create(
        messages=ASK, tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, **OPTS)
    calls = r.choices[0].message.tool_calls
    assert calls is not None and [c.function.name for c in calls] == ["get_time"]
    zone = json.loads(calls[0].function.arguments)["zone"]
    assert isinstance(zone, int) and -12 <= zone <= 14


def test_parallel_calls_stay_within_one_per_tool(tools_engine: Engine) -> None:
    for seed in (1, 2, 3, 4):
        r = tools_engine.chat.completions.create(
            messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
            parallel_tool_calls=True, **{**OPTS, "seed": seed, "temperature": 1.0,
                                         "max_tokens": 500})
        calls = r.choices[0].message.tool_calls or []
        assert 1 <= len(calls) <= 2 and r.choices[0].finish_reason == "tool_calls"
        for call in calls:
            assert call.function.name in ("get_weather", "get_time")
            json.loads(call.function.arguments)


def test_streamed_tool_call_reassembles_to_the_whole_answers_call(
        tools_engine: Engine) -> None:
    whole = tools_engine.chat.completions.create(
        messages=ASK, tools=[WEATHER], tool_choice="required", **OPTS)
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    first_pieces: list[Any] = []
    for chunk in tools_engine.chat.completions.create(
            messages=ASK, tools=[WEATHER], tool_choice="required", stream=True, **OPTS):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for piece in choice.delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"name": "", "arguments": "", "pieces": 0})
                if piece.id is not None:
                    first_pieces.append(piece)
                    call["id"] = piece.id
                if piece.function is not None:
                    call["name"] += piece.function.name or ""
                    call["arguments"] += piece.function.arguments or ""
                    call["pieces"] += 1
    assert finish == "tool_calls" and list(calls) == [0]
    expected = whole.choices[0].message.tool_calls
    assert expected is not None
    assert calls[0]["name"] == expected[0].function.name
    assert calls[0]["arguments"] == expected[0].function.arguments
    assert calls[0]["pieces"] > 2  # the name first, then the arguments in pieces
    assert first_pieces[0].function.name == "get_weather" and first_pieces[0].type == "function"


def test_history_with_calls_and_results_renders_and_answers(tools_engine: Engine) -> None:
    first = tools_engine.chat.completions.create(
        messages=ASK, tools=[WEATHER], tool_choice="required", **OPTS)
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    history = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    final = tools_engine.chat.completions.create(
        messages=history, tools=[WEATHER], **{**OPTS, "max_tokens": 8})
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].finish_reason in ("stop", "length")
    assert isinstance(final.choices[0].message.content, str)
    # The call and its result reached the model through Qwen's own template (the tiny
    # vocabulary spends about a token per byte on them).
    assert first.usage is not None and final.usage is not None
    assert final.usage.prompt_tokens > first.usage.prompt_tokens + 60


def test_auto_without_a_call_in_the_text_is_a_plain_answer(tools_engine: Engine) -> None:
    r = tools_engine.chat.completions.create(messages=ASK, tools=[WEATHER], tool_choice="auto",
                                             **{**OPTS, "max_tokens": 16})
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.choices[0].message.content


@pytest.mark.parametrize("body,param", [
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "maxLength": 100000}}}}}],
      "tool_choice": "required"}, "tools"),
])
def test_bad_tool_requests_are_refused_naming_the_field(tools_engine: Engine,
                                                        body: dict[str, Any],
                                                        param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        tools_engine.chat.completions.create(messages=ASK, max_tokens=4, **body)
    assert caught.value.param == param


def test_thinking_goes_to_reasoning_content_in_whole_and_streamed_answers(
        thinking_engine: Engine) -> None:
    opts = {**OPTS, "max_tokens": 24}
    whole = thinking_engine.chat.completions.create(messages=ASK, **opts).choices[0].message
    assert whole.reasoning_content and "<think>" not in whole.reasoning_content
    reasoning, content = "", ""
    for chunk in thinking_engine.chat.completions.create(messages=ASK, stream=True, **opts):
        for choice in chunk.choices:
            reasoning += choice.delta.reasoning_content or ""
            content += choice.delta.content or ""
    assert reasoning == whole.reasoning_content
    assert content == (whole.content or "")


def test_reasoning_effort_none_turns_thinking_off_where_the_template_can(
        thinking_engine: Engine) -> None:
    r = thinking_engine.chat.completions.create(messages=ASK, reasoning_effort="none",
                                                **{**OPTS, "max_tokens": 16})
    message = r.choices[0].message
    assert message.reasoning_content is None
    assert message.content
