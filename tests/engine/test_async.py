"""AsyncEngine: the same answers, streamed asynchronously; cancelling frees the sequence."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from engine_helpers import make_settings

from localloom.engine import AsyncEngine

MSGS = [{"role": "user", "content": "the cat"}]


async def _wait_idle(engine: AsyncEngine) -> bool:
    for _ in range(2000):
        stats = await engine.runtime_stats()
        if stats.requests_running == 0:
            return True
        await asyncio.sleep(0.005)
    return False


def test_async_stream_matches_async_whole_answer(tiny_gguf: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(make_settings(tmp_path)) as engine:
            await engine.reload(str(tiny_gguf))
            whole = await engine.chat.completions.create(messages=MSGS, temperature=0,
                                                         max_tokens=16)
            stream = await engine.chat.completions.create(messages=MSGS, temperature=0,
                                                          max_tokens=16, stream=True)
            text = ""
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
            assert text == whole.choices[0].message.content
            comp = await engine.completions.create(prompt="the dog", temperature=0,
                                                   max_tokens=4)
            assert comp.choices[0].finish_reason == "length"

    asyncio.run(main())


def test_closing_an_async_stream_frees_its_slot(tiny_gguf: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(make_settings(tmp_path, n_parallel=1)) as engine:
            await engine.reload(str(tiny_gguf))
            stream = await engine.chat.completions.create(messages=MSGS, max_tokens=400,
                                                          stream=True)
            await stream.__anext__()
            assert (await engine.runtime_stats()).requests_running == 1
            await stream.aclose()
            assert await _wait_idle(engine)
            r = await engine.chat.completions.create(messages=MSGS, max_tokens=3)
            assert r.choices[0].finish_reason in ("length", "stop")

    asyncio.run(main())


# The tiny model's random weights may end a text at once; without end-of-text (token 2) a
# generation runs to max_tokens, so it is surely seen running before it is cancelled (a
# quiet, fast box once ended it first and the wait below never returned).
NO_EOS = {"2": -100.0}


def test_cancelling_the_task_cancels_the_sequence(tiny_gguf: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(make_settings(tmp_path, n_parallel=1)) as engine:
            await engine.reload(str(tiny_gguf))

            async def consume() -> None:
                stream = await engine.chat.completions.create(messages=MSGS, max_tokens=400,
                                                              logit_bias=NO_EOS, stream=True)
                async for _ in stream:
                    await asyncio.sleep(0)

            async def whole() -> None:
                await engine.completions.create(prompt="the cat", max_tokens=400,
                                                logit_bias=NO_EOS)

            for job in (consume, whole):
                task = asyncio.create_task(job())
                while (await engine.runtime_stats()).requests_running == 0:
                    assert not task.done(), "the request ended before it was seen running"
                    await asyncio.sleep(0.001)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                assert await _wait_idle(engine)
                assert (await engine.runtime_stats()).steps < 400  # stopped early

    asyncio.run(main())


def test_many_async_requests_are_batched_and_correct(tiny_gguf: Path, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(make_settings(tmp_path)) as engine:
            await engine.reload(str(tiny_gguf))
            prompts = [f"the {w}" for w in ("cat", "dog", "model", "text", "one", "two")]
            solo = [(await engine.completions.create(prompt=p, temperature=0, max_tokens=12))
                    .choices[0].text for p in prompts]
            together = await asyncio.gather(*[
                engine.completions.create(prompt=p, temperature=0, max_tokens=12)
                for p in prompts])
            assert [r.choices[0].text for r in together] == solo

    asyncio.run(main())
