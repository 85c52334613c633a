"""The typed entry point beneath ``create``: ``Engine.submit`` / ``AsyncEngine.submit`` take
one parsed request; the keyword API builds that request once and calls it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine_helpers import make_settings

from localloom.engine import AsyncEngine, Engine
from localloom.engine.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)
from localloom.engine.streams import AsyncStream, Stream

_GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 12, "logit_bias": {"2": -100}}


def _chat(content: str, **extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.parse(
        {"messages": [{"role": "user", "content": content}], **_GREEDY, **extra})


def test_submit_answers_as_the_keyword_api_does(engine: Engine) -> None:
    typed = engine.submit(_chat("Tell me about rivers"))
    assert isinstance(typed, ChatCompletion) and typed.usage is not None
    kwargs = engine.chat.completions.create(
        messages=[{"role": "user", "content": "Tell me about rivers"}], **_GREEDY)
    assert typed.choices[0].message.content == kwargs.choices[0].message.content
    assert kwargs.usage is not None
    assert typed.usage.prompt_tokens == kwargs.usage.prompt_tokens  # the 2nd reuses the cache
    assert typed.usage.completion_tokens == kwargs.usage.completion_tokens == 12


def test_submit_of_a_completion_request_and_a_model_override(engine: Engine,
                                                             tiny_gguf: Path) -> None:
    req = CompletionRequest.parse({"prompt": "Once upon", "model": "not-loaded", **_GREEDY})
    typed = engine.submit(req, model=str(tiny_gguf))  # the server passes its leased id
    assert isinstance(typed, Completion)
    kwargs = engine.completions.create(prompt="Once upon", **_GREEDY)
    assert typed.choices[0].text == kwargs.choices[0].text
    assert typed.model == str(tiny_gguf)


def test_a_stream_keeps_its_usage_when_no_chunk_carries_it(engine: Engine) -> None:
    stream = engine.submit(_chat("Hello", stream=True))
    assert isinstance(stream, Stream) and stream.usage is None
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert stream.usage is not None and stream.usage.completion_tokens == 12


def test_async_submit_gives_the_same_greedy_answers_eight_in_flight_as_alone(
        tmp_path: Path, tiny_gguf: Path) -> None:
    prompts = [f"Question number {i}: what is {i} plus {i}?" for i in range(8)]

    async def main() -> tuple[list[str], list[str], list[str]]:
        async with AsyncEngine(make_settings(tmp_path)) as engine:
            await engine.load(str(tiny_gguf))
            alone = []
            for p in prompts:
                r = await engine.submit(_chat(p))
                assert isinstance(r, ChatCompletion)
                alone.append(r.choices[0].message.content or "")
            together = await asyncio.gather(*(engine.submit(_chat(p)) for p in prompts))
            streams = await asyncio.gather(*(engine.submit(_chat(p, stream=True))
                                             for p in prompts))
            streamed = []
            for s in streams:
                assert isinstance(s, AsyncStream)
                streamed.append("".join([c.choices[0].delta.content or "" async for c in s
                                         if c.choices]))
                assert s.usage is not None and s.usage.completion_tokens == 12
            answers = [r.choices[0].message.content or "" for r in together
                       if isinstance(r, ChatCompletion)]
            return alone, answers, streamed

    alone, together, streamed = asyncio.run(main())
    assert together == alone and streamed == alone
    assert len(set(alone)) > 1  # different prompts, different answers: a real comparison
