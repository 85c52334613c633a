"""`AsyncTaskRunner`: a :class:`TaskRunner`'s tasks on the event loop, over an `AsyncEngine`.

The model calls take the same async path as a chat request (``AsyncEngine`` streams, no
thread of their own); what is CPU work (preparing the plan, chunking by tokens, counting,
saving to the history) runs in worker threads so the loop never waits on it. Leaving the
event stream early (``aclose()``, or the task that iterates it being cancelled) stops every
model call in flight: map calls run as tasks of this one, cancelled together.

Example::

    tasks = AsyncTaskRunner(TaskRunner(async_engine.engine, settings=settings), async_engine)
    async for event in tasks.stream("summarize", text, model="starter"):
        ...  # TextDelta | Progress, then one TaskResult
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from localloom.errors import TaskError
from localloom.tasks.checks import OutputShaper
from localloom.tasks.events import Progress, TextDelta
from localloom.tasks.orchestration import Call, MapCalls, Split, orchestrate
from localloom.tasks.prompts import AnswerText
from localloom.tasks.runner import EMPTY_RETRIES, TaskEvent, TaskRunner, _Choice, _Job, take_chunk

if TYPE_CHECKING:
    from localloom.engine import AsyncEngine

__all__ = ["AsyncTaskRunner"]

_Steps = AsyncGenerator[TextDelta | Progress, None]


class AsyncTaskRunner:
    """Runs a :class:`TaskRunner`'s registered tasks with an :class:`AsyncEngine`."""

    def __init__(self, runner: TaskRunner, engine: AsyncEngine) -> None:
        self.runner = runner
        self.engine = engine

    async def stream(self, task: str, text: str, *, model: str | None = None,
                     lang: str | None = None, to: str | None = None, quick: bool = False,
                     save: bool = False, source: str | None = None,
                     options: Mapping[str, object] | None = None, context: str | None = None,
                     **sampling: Any) -> AsyncGenerator[TaskEvent, None]:
        """:meth:`TaskRunner.stream` as an async iterator: TextDelta and Progress events,
        then one TaskResult."""
        started = time.perf_counter()
        if not text.strip():
            raise TaskError("There is no text to work on. Pass some text, a --file, a --url, "
                            "or pipe text into `-`.")
        job = await asyncio.to_thread(self.runner._prepare, task, text, model,
                                      _Choice(lang, to, options, context), quick, sampling)
        first: list[float] = []
        parts: list[str] = []
        steps = self._drive(job, text)
        # Closed explicitly, here and below: leaving this stream early must reach the model
        # calls at once (a nested async generator is not closed with the one around it).
        async with aclosing(steps):
            async for event in steps:
                if isinstance(event, TextDelta):
                    if not first:
                        first.append(time.perf_counter())
                    parts.append(event.text)
                yield event
        timings = {"total_ms": round((time.perf_counter() - started) * 1000, 3)}
        if first:
            timings["first_token_ms"] = round((first[0] - started) * 1000, 3)
        result = await asyncio.to_thread(self.runner._result, job, text,
                                         "".join(parts).strip(), source, quick, timings)
        if save:
            result.saved_id = (await asyncio.to_thread(self.runner.save, result)).id
        yield result

    async def _drive(self, job: _Job, text: str) -> _Steps:
        """Run the task's calls in the order :func:`orchestrate` gives, passing its events
        on; what is CPU work (splitting by tokens) runs in a worker thread."""
        plan = orchestrate(job, text)
        answer: Any = None
        while True:
            try:
                step = plan.send(answer)
            except StopIteration:
                return
            answer = None
            if isinstance(step, Split):
                answer = await asyncio.to_thread(self.runner._chunks, job, step.text)
            elif isinstance(step, Call):
                async with aclosing(self._call(job, step.text, step.stage, stream=True,
                                               out=[])) as steps:
                    async for event in steps:
                        yield event
            elif isinstance(step, MapCalls):
                answer = []
                async with aclosing(self._map(job, step, answer)) as progress:
                    async for event in progress:
                        yield event
            else:
                yield step

    # -- the model calls ----------------------------------------------------------------

    async def _call(self, job: _Job, text: str, stage: str, *, stream: bool,
                    out: list[str]) -> _Steps:
        """One model call on `text` (its answer appended to `out`); yields its text as
        TextDelta when `stream`. An empty sampled answer is retried as
        :meth:`TaskRunner._call` does."""
        seed = job.sampling.get("seed")
        retries = EMPTY_RETRIES if float(job.sampling.get("temperature", 0)) > 0 else 0
        answer: list[str] = []
        for attempt in range(retries + 1):
            if attempt and seed is None:
                seed = random.randrange(1 << 31)
            sampling = {**job.sampling, "seed": None if seed is None else seed + attempt}
            answer.clear()
            async with aclosing(self._call_once(job, text, stage, stream, sampling,
                                                answer)) as deltas:
                async for delta in deltas:
                    yield delta
            if answer[0]:
                break
        out.append(answer[0])

    async def _call_once(self, job: _Job, text: str, stage: str, stream: bool,
                         sampling: dict[str, Any], out: list[str]) -> _Steps:
        prompt = job.plan.build(text)
        cap = prompt.rules.token_cap()  # the options' limits need no more than this
        max_tokens = min(int(sampling["max_tokens"]), cap or int(sampling["max_tokens"]))
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"model": job.model, "stream": True,
                                  "prompt_lookup": job.task.prompt_lookup,
                                  **sampling, "max_tokens": max_tokens}
        create: Any = self.engine.chat.completions.create
        if prompt.messages is not None:
            chunks = await create(messages=prompt.messages, **kwargs)
        else:
            create = self.engine.completions.create
            chunks = await create(prompt=prompt.text, **kwargs)
        answer = AnswerText(prompt.stop)
        shaper = OutputShaper(prompt.rules)  # holds the answer to the options' limits
        finish: str | None = None
        try:
            async for chunk in chunks:
                shown, finish = take_chunk(chunk, prompt.messages is not None, answer,
                                           shaper, finish)
                if shown and stream:
                    yield TextDelta(shown)
                if answer.stopped or shaper.full:
                    finish = "stop"
                    break
        finally:
            await chunks.aclose()  # stops the generation at once if we left early
        rest = shaper.feed(answer.finish()) + shaper.finish()
        if rest and stream:
            yield TextDelta(rest)
        # The stream's usage is None when a stop string ended it early: then _record
        # counts tokens, in a worker thread.
        job.calls.append(await asyncio.to_thread(
            self.runner._record, job, prompt, shaper.text, chunks.usage, stage, max_tokens,
            finish, started))
        out.append(shaper.text)

    async def _complete(self, job: _Job, text: str, stage: str) -> str:
        out: list[str] = []
        async with aclosing(self._call(job, text, stage, stream=False, out=out)) as steps:
            async for _ in steps:
                pass
        return out[0]

    async def _map(self, job: _Job, step: MapCalls,
                   out: list[str]) -> AsyncGenerator[Progress, None]:
        """Summarize every part, several at once (the engine batches parallel sequences);
        the non-empty summaries, in order, go to `out`."""
        parts = step.parts
        results = [""] * len(parts)
        room = asyncio.Semaphore(max(1, min(job.parallel, len(parts))))

        async def one(index: int, part: str) -> int:
            async with room:
                results[index] = (await self._complete(job, part, "map")).strip()
            return index

        calls = [asyncio.ensure_future(one(i, part)) for i, part in enumerate(parts)]
        try:
            for finished, call in enumerate(asyncio.as_completed(calls), start=1):
                yield step.progress(finished, await call)
        finally:  # the consumer left or a call failed: stop the running calls too
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        out.extend(r for r in results if r)
