"""The tasks endpoints' logic: run a task on the event loop, stream its events as SSE.

A task's model calls take the same async path as a chat request (:class:`AsyncTaskRunner`
over the :class:`AsyncEngine`; its CPU work runs in worker threads). When the client goes
away the event stream is closed, which stops every model call in flight (map-reduce runs
several) at once, freeing their decode slots.

Example::

    service = TasksService(engine=engine, models=manager, drain=drain, settings=settings,
                           history=history)
    response = await service.run("summarize", TaskRequest(text="...", save=True))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException
from starlette.responses import Response

from localloom.config import Settings
from localloom.errors import TaskError
from localloom.server.drain import Drain
from localloom.server.errors import reply_for
from localloom.server.models_manager import Lease, ModelsManager
from localloom.server.pairing import Pairing, pull_refusal
from localloom.server.sse import EventStreamResponse, aclose_stream, shutdown_event, sse_event
from localloom.server.tasks.protocol import (
    DetectedLanguage,
    LanguageResponse,
    TaskInfo,
    TaskOptionInfo,
    TaskRequest,
    TasksResponse,
)
from localloom.tasks import (
    Progress,
    TaskEvent,
    TaskResult,
    TaskRunner,
    TextDelta,
)
from localloom.tasks.aio import AsyncTaskRunner
from localloom.tasks.inputs import extract_main_text
from localloom.tasks.options import resolve_options

if TYPE_CHECKING:
    from localloom.engine import AsyncEngine
    from localloom.history import HistoryStore
    from localloom.store import ModelStore

__all__ = ["TasksService"]

# How often a task that has not sent its first event checks that its client is still there.
_DISCONNECT_POLL_S = 0.25


class TasksService:
    """Serves ``/api/tasks``."""

    def __init__(self, *, engine: AsyncEngine, models: ModelsManager, drain: Drain,
                 settings: Settings,
                 history: HistoryStore | Callable[[], HistoryStore] | None = None) -> None:
        self.engine = engine
        self.models = models
        self.drain = drain
        self.runner = TaskRunner(engine.engine, history=history, settings=settings)
        self.tasks = AsyncTaskRunner(self.runner, engine)

    def list_tasks(self) -> TasksResponse:
        """Every registered task."""
        registry = self.runner.registry
        tasks = [TaskInfo(name=t.name, description=t.description, origin=t.origin,
                          needs_target=t.needs_target,
                          options=[TaskOptionInfo(**o.describe()) for o in t.options])
                 for t in registry]
        return TasksResponse(tasks=tasks, problems=[str(p) for p in registry.problems])

    async def detect_language(self, text: str) -> LanguageResponse:
        """The language of ``text``, most likely first (langdetect runs off the loop)."""
        ranked = await asyncio.to_thread(self.runner.detector.ranked, text)
        candidates = [DetectedLanguage(language=code, confidence=round(p, 4))
                      for code, p in ranked]
        top = candidates[0] if candidates else DetectedLanguage(language="und", confidence=0.0)
        return LanguageResponse(language=top.language, confidence=top.confidence,
                                candidates=candidates)

    async def run(self, task: str, body: TaskRequest, *, pairing: Pairing | None = None,
                  store: ModelStore | None = None,
                  disconnected: Callable[[], Awaitable[bool]] | None = None) -> Response:
        """Check the request, lease the model (loading it if needed), then stream the task.

        ``pairing`` is the paired extension that asked (None for the server token): without
        the ``pull`` scope it may not make the server download a model. ``disconnected``
        tells whether the client left before the first event (a page's AbortSignal while
        the model reads a long text): the task stops then and its slot is freed.
        """
        if task not in self.runner.registry:
            names = ", ".join(self.runner.registry.names())
            raise HTTPException(404, f"There is no task '{task}'. Tasks: {names} "
                                     "(GET /api/tasks lists them).")
        definition = self.runner.registry.get(task)
        if definition.needs_target and not body.to:
            raise TaskError(f"Task '{task}' needs a target language: send \"to\": \"es\".")
        resolve_options(definition, body.options)  # a bad option is a 400 before loading
        text = body.text
        if text is None:  # a whole page: trafilatura's main text, as `--url` gets
            text = await asyncio.to_thread(extract_main_text, body.html or "", body.url)
        model_id = self.models.default_model(body.model)
        if pairing is not None and store is not None:
            why = await asyncio.to_thread(pull_refusal, pairing, model_id, self.models.catalog,
                                          store)
            if why is not None:
                raise HTTPException(403, why)
        lease = await self.models.acquire(model_id)
        events = self.tasks.stream(task, text, model=lease.model_id, lang=body.lang,
                                   to=body.to, quick=body.quick, save=body.save,
                                   source=body.source or body.url, options=body.options,
                                   context=body.context, **body.sampling())
        try:
            # A task that fails before its first event (too little context, a bad
            # setting) answers with its own HTTP status rather than a 200 stream.
            first = await _first_event(events, disconnected)
        except BaseException:
            await events.aclose()
            lease.release()
            raise
        if first is None:  # the client left: nobody reads an answer
            await events.aclose()
            lease.release()
            return Response(status_code=499)

        async def close() -> None:  # also when the client left before the first event
            await events.aclose()  # stops every model call of the task at once
            lease.release()

        return EventStreamResponse(self._events(first, events, lease), drain=self.drain,
                                   on_abort=lambda: shutdown_event("error"), on_close=close)

    async def _events(self, first: TaskEvent, events: AsyncIterator[TaskEvent],
                      lease: Lease) -> AsyncIterator[bytes]:
        try:
            yield _frame(first)
            async for event in events:
                yield _frame(event)
        except Exception as exc:  # every failure becomes the stream's error event
            yield sse_event(reply_for(exc).body, "error")
        finally:
            await aclose_stream(events)
            lease.release()


async def _first_event(events: AsyncIterator[TaskEvent],
                       disconnected: Callable[[], Awaitable[bool]] | None) -> TaskEvent | None:
    """The task's first event, or None when the client disconnects before it comes (no
    response has started, so nothing else would notice: a page's AbortSignal while the
    model reads a long text)."""
    if disconnected is None:
        return await anext(events)
    getter = asyncio.ensure_future(anext(events))
    try:
        while True:
            done, _ = await asyncio.wait({getter}, timeout=_DISCONNECT_POLL_S)
            if done:
                return getter.result()
            if await disconnected():
                return None
    finally:
        if not getter.done():
            getter.cancel()  # the generator must stop before the caller closes it
            with contextlib.suppress(asyncio.CancelledError):
                await getter


def _frame(event: TaskEvent) -> bytes:
    if isinstance(event, TextDelta):
        return sse_event({"text": event.text}, "delta")
    if isinstance(event, Progress):
        return sse_event({"done": event.done, "total": event.total, "text": event.text},
                         "progress")
    return sse_event(_result(event), "done")


def _result(result: TaskResult) -> dict[str, Any]:
    return {"task": result.task, "model": result.model, "text": result.text,
            "language": result.language, "source_language": result.source_language,
            "chunks": result.chunks, "calls": len(result.calls), "usage": result.usage,
            "timings": result.timings, "saved_id": result.saved_id,
            "original": result.original, "options": result.options,
            "corrections": (None if result.corrections is None
                            else [c.as_dict() for c in result.corrections])}
