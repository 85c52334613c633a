"""Errors a user can act on: bad parameters, over-long prompts, missing or broken models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_helpers import CHAT, greedy_text, make_settings

from localloom.engine import Engine
from localloom.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotLoadedError,
)


@pytest.mark.parametrize(
    ("params", "field", "hint"),
    [
        ({"temperature": 5}, "temperature", "2"),
        ({"top_p": 0}, "top_p", "1"),
        ({"top_k": -1}, "top_k", "0"),
        ({"min_p": 1.5}, "min_p", "1"),
        ({"max_tokens": 0}, "max_tokens", "1"),
        ({"n": 0}, "n", "1"),
        ({"frequency_penalty": 3}, "frequency_penalty", "2"),
        ({"presence_penalty": -3}, "presence_penalty", "-2"),
        ({"repetition_penalty": 0}, "repetition_penalty", "0"),
        ({"logit_bias": {"5": 500}}, "logit_bias", "100"),
        ({"logit_bias": {"999999": 1}}, "logit_bias", "323"),
        ({"top_logprobs": 3}, "top_logprobs", "logprobs"),
        ({"stop": ["a", ""]}, "stop", "empty"),
        ({"response_format": {"type": "xml"}}, "response_format", "json_object"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "stream"),
        ({"n": 9}, "n", "8"),
        ({"bogus": 1}, "bogus", "temperature"),
    ],
)
def test_invalid_parameter_raises_invalid_request_naming_the_field(
        engine: Engine, params: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        engine.chat.completions.create(messages=CHAT, **params)
    assert info.value.param == field
    assert field in str(info.value) and hint in str(info.value)


def test_bad_message_role_names_messages(engine: Engine) -> None:
    with pytest.raises(InvalidRequestError) as info:
        engine.chat.completions.create(messages=[{"role": "wizard", "content": "hi"}])
    assert info.value.param == "messages"


def test_overlong_prompt_raises_context_length_exceeded_with_numbers(engine: Engine) -> None:
    prompt = "the cat and the dog " * 60
    n_prompt = engine.count_tokens(prompt)
    assert n_prompt > 512
    with pytest.raises(ContextLengthExceededError) as info:
        engine.completions.create(prompt=prompt, max_tokens=10)
    assert (info.value.prompt_tokens, info.value.n_ctx) == (n_prompt, 512)
    assert str(n_prompt) in str(info.value) and "512" in str(info.value)


def test_prompt_plus_max_tokens_over_context_raises_with_max_tokens(engine: Engine) -> None:
    prompt = "the cat and the dog " * 20
    n_prompt = engine.count_tokens(prompt)
    with pytest.raises(ContextLengthExceededError) as info:
        engine.completions.create(prompt=prompt, max_tokens=512 - n_prompt + 1)
    assert info.value.max_tokens == 512 - n_prompt + 1
    # without max_tokens the answer may use the rest of the context, never more
    r = engine.completions.create(prompt=prompt, temperature=0, max_tokens=512 - n_prompt)
    assert r.usage is not None and r.usage.total_tokens <= 512


def test_default_max_tokens_fills_the_context_and_stops_with_length(engine: Engine) -> None:
    prompt = "the cat and the dog " * 24
    n_prompt = engine.count_tokens(prompt)
    r = engine.completions.create(prompt=prompt, temperature=0, logit_bias={2: -100.0})
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 512 - n_prompt


def test_truncated_gguf_raises_model_load_error_then_engine_loads_good_model(
        tiny_gguf: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    data = tiny_gguf.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with Engine(make_settings(tmp_path)) as eng:
        with pytest.raises(ModelLoadError) as info:
            eng.reload(str(broken))
        assert "broken.gguf" in str(info.value)
        assert eng.loaded_model is None
        eng.reload(str(tiny_gguf))
        assert greedy_text(eng, "the cat", max_tokens=4)


def test_non_gguf_file_raises_model_load_error_saying_so(tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("this is not a model")
    with Engine(make_settings(tmp_path)) as eng, pytest.raises(ModelLoadError, match="GGUF"):
        eng.reload(str(fake))


def test_missing_file_raises_model_load_error(tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path)) as eng, pytest.raises(ModelLoadError,
                                                               match="does not exist"):
        eng.reload(str(tmp_path / "nowhere.gguf"))


def test_generating_without_a_loaded_model_raises_model_not_loaded(tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path)) as eng, pytest.raises(ModelNotLoadedError,
                                                               match="reload"):
        eng.chat.completions.create(messages=CHAT)


def test_asking_for_a_model_that_is_not_loaded_names_it(engine: Engine) -> None:
    with pytest.raises(ModelNotLoadedError, match=r"other\.gguf"):
        engine.chat.completions.create(messages=CHAT, model="/x/other.gguf")


def test_unknown_catalog_id_raises_model_not_found(tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path)) as eng, pytest.raises(ModelNotFoundError):
        eng.reload("no-such-model-anywhere")
