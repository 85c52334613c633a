"""The official `openai` client talks to a live server: chat, streams, completions, errors."""

from __future__ import annotations

import json

import openai
import pytest
from server_harness import MODEL, LiveServer


def test_openai_client_lists_the_user_model(server: LiveServer) -> None:
    ids = [m.id for m in server.client().models.list()]
    assert MODEL in ids
    assert server.client().models.retrieve(MODEL).id == MODEL


def test_openai_client_gets_a_chat_completion(server: LiveServer) -> None:
    r = server.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}], max_tokens=8, seed=1)
    assert r.object == "chat.completion"
    assert r.model == MODEL
    assert isinstance(r.choices[0].message.content, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 8


def test_openai_client_streams_a_chat_completion(server: LiveServer) -> None:
    stream = server.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count"}], max_tokens=12,
        stream=True, stream_options={"include_usage": True}, logit_bias={"2": -100})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)


def test_stream_ends_with_done_and_has_no_usage_unless_asked(server: LiveServer) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            "stream": True}
    with server.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c.get("usage") is None for c in chunks)


def test_openai_client_gets_a_text_completion_and_its_stream(server: LiveServer) -> None:
    client = server.client()
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6)
    assert r.object == "text_completion"
    assert isinstance(r.choices[0].text, str)
    pieces = list(client.completions.create(model=MODEL, prompt="Once", max_tokens=6,
                                            stream=True, logit_bias={"2": -100}))
    assert "".join(p.choices[0].text for p in pieces if p.choices)


def test_context_overflow_is_a_bad_request_with_token_counts(server: LiveServer) -> None:
    long_prompt = "hello world " * 3000
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": long_prompt}], max_tokens=4)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "context_length_exceeded"
    assert error["n_prompt_tokens"] > error["n_ctx"] > 0
    with pytest.raises(openai.BadRequestError):  # streaming: a status, not a broken stream
        server.client().completions.create(model=MODEL, prompt=long_prompt, stream=True)


def test_unknown_model_is_not_found_with_a_suggestion(server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        server.client().chat.completions.create(
            model="tiny2", messages=[{"role": "user", "content": "hi"}])
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_not_found" and body["param"] == "model"
    assert "'tiny'" in body["message"]


@pytest.mark.parametrize("field,value", [
    ("temperature", 5), ("top_p", 0), ("max_tokens", 0), ("n", 99), ("stop", [""]),
    ("logit_bias", {"x": 1}), ("messages", []), ("messages", [{"role": "wizard"}]),
    ("temperature", "hot"), ("stream_options", {"include_usage": True}),
])
def test_invalid_parameters_are_400_naming_the_field(server: LiveServer, field: str,
                                                     value: object) -> None:
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    body[field] = value
    with server.http() as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].split(".")[0] == field


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b"null", b'"text"', b"",
                                 b'{"model": "tiny", "prompt": 3}'])
def test_malformed_bodies_are_400_never_500(server: LiveServer, raw: bytes) -> None:
    with server.http() as http:
        for path in ("/v1/chat/completions", "/v1/completions"):
            r = http.post(path, content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (path, raw, r.text)
            assert r.json()["error"]["message"]


def test_unknown_routes_answer_in_openai_error_shape(server: LiveServer) -> None:
    with server.http() as http:
        r = http.get("/v1/nope")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        r = http.get("/v1/chat/completions")
        assert r.status_code == 405
