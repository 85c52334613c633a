"""The openai SDK's ``responses.create`` (plain, streamed, structured, chained) against a
live LocalLoom server."""

from __future__ import annotations

import json

import openai
import pytest
from server_harness import LiveServer

from conftest import TOOLS_MODEL


def test_a_plain_response_has_output_text_and_usage(server: LiveServer) -> None:
    response = server.client().responses.create(
        model="tiny", input="Hello", instructions="Answer briefly.", max_output_tokens=8,
        extra_body={"seed": 3})
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.output_text and response.output[0].type == "message"
    assert response.usage is not None and 0 < response.usage.output_tokens <= 8
    assert response.status in ("completed", "incomplete")


def test_a_streamed_response_sends_the_events_the_sdk_parses(server: LiveServer) -> None:
    events = list(server.client().responses.create(model="tiny", input="Hi", stream=True,
                                                   max_output_tokens=6))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    if kinds[-1] == "response.incomplete":  # cut at max_output_tokens, not ended by the model
        details = events[-1].response.incomplete_details
        assert details is not None and details.reason == "max_output_tokens"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = next(e for e in events if e.type == "response.output_text.done")
    assert deltas and deltas == done.text == events[-1].response.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    usage = events[-1].response.usage  # the stream's own counts, no usage chunk asked for
    assert usage is not None and usage.input_tokens > 0 and 0 < usage.output_tokens <= 6


_BOOL = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
         "additionalProperties": False}


def test_the_sdk_stream_helper_accumulates_the_final_response(server: LiveServer) -> None:
    # A schema makes the answer end by itself (a cut one ends in response.incomplete,
    # which the helper refuses, as with OpenAI).
    with server.client().responses.stream(
            model="tiny", input="Hi", max_output_tokens=60,
            text={"format": {"type": "json_schema", "name": "ok", "schema": _BOOL}}) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts) and final.usage is not None
    assert final.status == "completed" and isinstance(json.loads(final.output_text)["ok"], bool)


def test_json_schema_format_gives_json_that_fits(server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    response = server.client().responses.create(
        model="tiny", input="A number", max_output_tokens=40,
        text={"format": {"type": "json_schema", "name": "num", "schema": schema,
                         "strict": True}})
    assert isinstance(json.loads(response.output_text)["n"], int)


def test_previous_response_id_continues_the_stored_conversation(server: LiveServer) -> None:
    client = server.client()
    first = client.responses.create(model="tiny", input="One", max_output_tokens=4)
    second = client.responses.create(model="tiny", input="Two", max_output_tokens=4,
                                     previous_response_id=first.id)
    # The second prompt holds the first turn and its answer: more input tokens.
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.BadRequestError, match="No stored response"):
        client.responses.create(model="tiny", input="x", previous_response_id=first.id)


def test_bad_input_gets_a_clear_400(server: LiveServer) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError, match="web_search"):
        client.responses.create(model="tiny", input="x",
                                tools=[{"type": "web_search_preview"}])
    with pytest.raises(openai.BadRequestError, match="text only"):
        client.responses.create(model="tiny", input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}])


def test_a_required_function_call_is_a_function_call_item(server: LiveServer) -> None:
    tool = {"type": "function", "name": "get_weather", "description": "The weather",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 10}}, "required": ["city"],
                "additionalProperties": False}}
    client = server.client()
    response = client.responses.create(model=TOOLS_MODEL, input="Weather in Paris?",
                                       tools=[tool], tool_choice="required",
                                       max_output_tokens=200, extra_body={"seed": 5})
    call = response.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert set(json.loads(call.arguments)) == {"city"}
    with client.responses.stream(model=TOOLS_MODEL, input="Weather in Paris?", tools=[tool],
                                 tool_choice="required", max_output_tokens=200) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds
    assert final.output[-1].type == "function_call"
    # The call's result goes back as an item on the stored conversation (tools are sent
    # again: like instructions, they are not carried over).
    done = client.responses.create(
        model=TOOLS_MODEL, previous_response_id=response.id, max_output_tokens=10, tools=[tool],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}])
    assert done.status in ("completed", "incomplete")
    assert done.usage is not None and response.usage is not None
    assert done.usage.input_tokens > response.usage.input_tokens
