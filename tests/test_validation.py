"""The one validation-error formatter: every request boundary reports a bad field alike."""

from __future__ import annotations

from typing import Any

import pytest

from localloom.engine.embeddings import EmbeddingRequest
from localloom.engine.protocol import ChatCompletionRequest
from localloom.errors import InvalidRequestError
from localloom.server.ollama.protocol import OllamaChatRequest
from localloom.server.responses.protocol import ResponseRequest

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("parse,data,param,parts", [
    (ChatCompletionRequest.parse, {"messages": [{"role": "wizard", "content": "hi"}]},
     "messages", ["Invalid 'messages[0].role'", "(got 'wizard')"]),
    (ChatCompletionRequest.parse, {"messages": HI, "temperature": 9},
     "temperature", ["Invalid 'temperature'", "(got 9)", "Allowed range: 0 <= temperature <= 2."]),
    (ChatCompletionRequest.parse, {"messages": HI, "logit_bias": {"5": 500}},
     "logit_bias", ["Invalid 'logit_bias[5]'", "from -100 to 100"]),
    (EmbeddingRequest.parse, {"model": "m", "input": [{}]},
     "input", ["Invalid 'input'", "a list of token ids"]),
    (EmbeddingRequest.parse, {"model": "m", "input": "a", "bogus": 1},
     "bogus", ["Unknown field 'bogus'", "Supported fields:", "dimensions"]),
    (ResponseRequest.parse, {"model": "m", "input": "hi", "max_output_tokens": 0},
     "max_output_tokens", ["Invalid 'max_output_tokens'", "(got 0)", "Allowed range: 1 <="]),
    (ResponseRequest.parse, {"model": "m", "input": "hi", "frobnicate": 1},
     "frobnicate", ["Unknown field 'frobnicate': LocalLoom does not support it."]),
])
def test_each_boundary_names_the_field_its_path_and_what_is_allowed(
        parse: Any, data: dict[str, Any], param: str, parts: list[str]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(data)
    assert caught.value.param == param
    for part in parts:
        assert part in str(caught.value), str(caught.value)


def test_pydantic_union_member_names_stay_out_of_the_path() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ChatCompletionRequest.parse({"messages": HI, "stop": [1]})
    assert str(caught.value).startswith("Invalid 'stop': ") and "list[str]" not in str(caught.value)


def test_a_long_bad_value_is_shown_cut_short() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ChatCompletionRequest.parse({"messages": HI, "temperature": "x" * 10_000})
    assert "(got 'xxx" in str(caught.value) and len(str(caught.value)) < 300


def test_ollama_requests_use_the_same_formatter_and_point_at_its_docs() -> None:
    # The Ollama route validates with this model through the shared formatter; its own
    # message adds the pointer to Ollama's API docs (checked live in tests/clients).
    from pydantic import ValidationError

    from localloom._validation import invalid_request

    with pytest.raises(ValidationError) as raw:
        OllamaChatRequest.model_validate({"model": "m", "messages": [{"role": 3}]})
    err = invalid_request(raw.value.errors(), model=OllamaChatRequest, advice="See docs/api.md.")
    assert err.param == "messages" and str(err).startswith("Invalid 'messages[0]")
    assert str(err).endswith("See docs/api.md.")


def test_fastapi_parameter_errors_go_through_the_same_formatter() -> None:
    from fastapi.exceptions import RequestValidationError

    from localloom.server.errors import reply_for

    exc = RequestValidationError([{"type": "greater_than_equal", "loc": ("query", "limit"),
                                   "msg": "Input should be greater than or equal to 1",
                                   "input": -3}])
    reply = reply_for(exc)
    error = reply.body["error"]
    assert reply.status == 400 and error["param"] == "limit"
    assert error["code"] == "invalid_value"
    assert error["message"] == ("Invalid 'limit': Input should be greater than or equal to 1 "
                                "(got -3). Fix it and send the request again.")
