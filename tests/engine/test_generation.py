"""What a user sees from one request: determinism, streaming, stops, limits, seeds, n, JSON."""

from __future__ import annotations

import json
import re

import pytest
from engine_helpers import CHAT, greedy_text
from openai.types import Completion as OpenAICompletion
from openai.types.chat import ChatCompletion as OpenAIChatCompletion
from openai.types.chat import ChatCompletionChunk as OpenAIChunk
from pydantic import BaseModel, Field

from localloom.engine import Engine


def test_greedy_output_is_deterministic(engine: Engine) -> None:
    first = greedy_text(engine, "hello the cat")
    assert first
    assert greedy_text(engine, "hello the cat") == first


def test_streamed_text_equals_non_streamed_text(engine: Engine) -> None:
    whole = engine.chat.completions.create(messages=CHAT, temperature=0, max_tokens=24)
    pieces: list[str] = []
    reasons: list[str | None] = []
    for chunk in engine.chat.completions.create(messages=CHAT, temperature=0, max_tokens=24,
                                                stream=True):
        OpenAIChunk.model_validate(chunk.model_dump())
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            reasons.append(choice.finish_reason)
    assert "".join(pieces) == whole.choices[0].message.content
    assert reasons[-1] == whole.choices[0].finish_reason


def test_stop_string_ends_output_without_including_it(engine: Engine) -> None:
    full = greedy_text(engine, "hello the cat", max_tokens=40)
    match = re.search(r"[A-Za-z]{2}", full[4:])
    assert match, f"no letters to stop at in {full!r}"
    stop = match.group(0)
    expected = full[: full.find(stop)]
    r = engine.chat.completions.create(messages=CHAT, temperature=0, max_tokens=40, stop=[stop])
    assert r.choices[0].message.content == expected
    assert r.choices[0].finish_reason == "stop"
    assert stop not in (r.choices[0].message.content or "")


def test_stop_string_split_across_stream_chunks_is_never_streamed(engine: Engine) -> None:
    full = greedy_text(engine, "hello the cat", max_tokens=40)
    stop = full[6:10]
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in engine.chat.completions.create(messages=CHAT, temperature=0, max_tokens=40,
                                                stop=stop, stream=True) if c.choices)
    assert streamed == full[: full.find(stop)]


def test_max_tokens_gives_finish_reason_length(engine: Engine) -> None:
    r = engine.chat.completions.create(messages=CHAT, temperature=0, max_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 5


def test_same_seed_reproduces_sampled_output(engine: Engine) -> None:
    def sample(seed: int) -> str:
        r = engine.chat.completions.create(messages=CHAT, temperature=1.0, top_k=0, top_p=1.0,
                                           min_p=0.0, seed=seed, max_tokens=30)
        return r.choices[0].message.content or ""

    assert sample(42) == sample(42)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


class Answer(BaseModel):
    name: str = Field(max_length=8)
    count: int
    ok: bool


def test_json_schema_response_parses_and_validates(engine: Engine) -> None:
    schema = Answer.model_json_schema()
    r = engine.chat.completions.create(
        messages=CHAT, temperature=1.0, seed=7, max_tokens=200,
        response_format={"type": "json_schema", "json_schema": {"name": "answer",
                                                                "schema": schema}})
    text = r.choices[0].message.content or ""
    assert r.choices[0].finish_reason == "stop"
    Answer.model_validate_json(text)


def test_a_grammar_constrains_every_seed_and_greedy_alike(engine: Engine) -> None:
    """The grammar checks the chain's pick and filters the vocabulary only when it is not
    allowed: every answer still follows the schema."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"},
                                               "tag": {"enum": ["cat", "dog", "bird"]}},
              "required": ["n", "tag"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
    for temperature, seed in ((0.0, 0), (1.0, 1), (1.0, 2), (1.5, 3)):
        r = engine.chat.completions.create(messages=CHAT, temperature=temperature, seed=seed,
                                           max_tokens=120, response_format=fmt)
        value = json.loads(r.choices[0].message.content or "")
        assert isinstance(value["n"], int) and value["tag"] in ("cat", "dog", "bird")


def test_json_object_response_parses(engine: Engine) -> None:
    r = engine.chat.completions.create(messages=CHAT, temperature=0.7, seed=3, max_tokens=300,
                                       response_format={"type": "json_object"},
                                       logit_bias={"2": -100.0})
    text = r.choices[0].message.content or ""
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # a random model may nest forever; what it wrote is still a JSON prefix
        assert text.lstrip().startswith("{")


def test_n_3_returns_three_different_choices(engine: Engine) -> None:
    r = engine.chat.completions.create(messages=CHAT, n=3, temperature=1.0, top_k=0,
                                       min_p=0.0, seed=11, max_tokens=20)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) > 1
    assert r.usage is not None and 3 <= r.usage.completion_tokens <= 3 * 20
    OpenAIChatCompletion.model_validate(r.model_dump())


def test_n_greedy_choices_each_equal_the_single_answer(engine: Engine) -> None:
    single = greedy_text(engine, "hello the cat", max_tokens=16)
    r = engine.chat.completions.create(messages=CHAT, n=3, temperature=0, max_tokens=16)
    assert [c.message.content for c in r.choices] == [single] * 3


def test_stream_with_include_usage_ends_with_a_usage_chunk(engine: Engine) -> None:
    chunks = list(engine.chat.completions.create(messages=CHAT, temperature=0, max_tokens=6,
                                                 stream=True,
                                                 stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 6
    assert last.usage.total_tokens == last.usage.prompt_tokens + 6
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_logprobs_cover_every_token(engine: Engine) -> None:
    r = engine.chat.completions.create(messages=CHAT, temperature=0, max_tokens=8,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content if r.choices[0].logprobs else None
    assert content is not None and len(content) == 8
    for item in content:
        assert item.logprob <= 0.0
        assert len(item.top_logprobs) == 3
        # greedy picks the most likely token, so it leads the alternatives
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-5)
    OpenAIChatCompletion.model_validate(r.model_dump())


def test_text_completion_validates_with_openai_types(engine: Engine) -> None:
    prompt = "the cat and the dog"
    r = engine.completions.create(prompt=prompt, temperature=0, max_tokens=7, logprobs=2)
    OpenAICompletion.model_validate(r.model_dump())
    assert r.usage is not None
    assert r.usage.prompt_tokens == engine.count_tokens(prompt)
    assert r.usage.completion_tokens == 7
    assert r.choices[0].logprobs is not None and len(r.choices[0].logprobs.tokens) == 7
    pieces = list(engine.completions.create(prompt=prompt, temperature=0, max_tokens=7,
                                            stream=True))
    assert "".join(p.choices[0].text for p in pieces) == r.choices[0].text
    OpenAICompletion.model_validate(pieces[-1].model_dump())
    assert pieces[-1].choices[0].finish_reason == "length"


def test_top_k_1_sampling_equals_greedy_output(engine: Engine) -> None:
    greedy = greedy_text(engine, "hello the cat", max_tokens=30)
    r = engine.chat.completions.create(messages=CHAT, temperature=1.0, top_k=1, seed=5,
                                       max_tokens=30)
    assert r.choices[0].message.content == greedy


def test_logit_bias_bans_a_token_from_greedy_output(engine: Engine) -> None:
    def first_token(**extra: object) -> str:
        r = engine.completions.create(prompt="the cat", temperature=0, max_tokens=1,
                                      logprobs=0, **extra)  # type: ignore[call-overload]
        assert r.choices[0].logprobs is not None
        return str(r.choices[0].logprobs.tokens[0])

    usual = first_token()
    assert first_token(logit_bias=dict.fromkeys(_token_ids(engine, usual), -100)) != usual


def _token_ids(engine: Engine, piece: str) -> list[int]:
    """Every vocabulary id whose text is ``piece`` (a byte token and a word piece may tie)."""
    model = engine._runner(None).model
    ids = [i for i in range(model.n_vocab)
           if model.piece(i, special=True).decode("utf-8", "replace") == piece]
    assert ids, piece
    return ids
