"""The tasks endpoints' logic: run a :class:`TaskRunner` in a worker thread, stream as SSE.

The runner is synchronous, so it runs in its own thread and hands each event to the event
loop; the SSE generator sends them. When the client goes away the generator is cancelled,
which cancels the task: every model call in flight (map-reduce runs several) is aborted at
once, freeing its decode slot, and the worker thread ends.

Example::

    service = TasksService(engine=engine, models=manager, drain=drain, settings=settings,
                           history=history)
    response = await service.run("summarize", TaskRequest(text="...", save=True))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from localloom.config import Settings
from localloom.errors import TaskError
from localloom.server.drain import Drain
from localloom.server.errors import reply_for
from localloom.server.models_manager import Lease, ModelsManager
from localloom.server.pairing import Pairing, pull_refusal
from localloom.server.sse import EventStreamResponse, shutdown_event, sse_event
from localloom.server.tasks.protocol import TaskInfo, TaskOptionInfo, TaskRequest, TasksResponse
from localloom.tasks import (
    Cancellation,
    Progress,
    TaskEvent,
    TaskResult,
    TaskRunner,
    TextDelta,
)
from localloom.tasks.inputs import extract_main_text
from localloom.tasks.options import resolve_options

if TYPE_CHECKING:
    from localloom.engine import AsyncEngine
    from localloom.history import HistoryStore
    from localloom.store import ModelStore

__all__ = ["TasksService"]

# What the worker thread hands the loop: an event, an error, or the end.
_Item = tuple[str, Any]


class TasksService:
    """Serves ``/api/tasks``."""

    def __init__(self, *, engine: AsyncEngine, models: ModelsManager, drain: Drain,
                 settings: Settings,
                 history: HistoryStore | Callable[[], HistoryStore] | None = None) -> None:
        self.engine = engine
        self.models = models
        self.drain = drain
        self.runner = TaskRunner(engine.engine, history=history, settings=settings)

    def list_tasks(self) -> TasksResponse:
        """Every registered task."""
        registry = self.runner.registry
        tasks = [TaskInfo(name=t.name, description=t.description, origin=t.origin,
                          needs_target=t.needs_target,
                          options=[TaskOptionInfo(**o.describe()) for o in t.options])
                 for t in registry]
        return TasksResponse(tasks=tasks, problems=[str(p) for p in registry.problems])

    async def run(self, task: str, body: TaskRequest, *, pairing: Pairing | None = None,
                  store: ModelStore | None = None) -> EventStreamResponse:
        """Check the request, lease the model (loading it if needed), then stream the task.

        ``pairing`` is the paired extension that asked (None for the server token): without
        the ``pull`` scope it may not make the server download a model.
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
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = Cancellation()  # the client left, or the drain ended the stream: stop it all

        def put(item: _Item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        worker = threading.Thread(target=self._work, args=(task, body, text, lease.model_id,
                                                           stop, put),
                                  name="localloom-task", daemon=True)
        worker.start()
        try:
            # A task that fails before its first event (too little context, a bad
            # setting) answers with its own HTTP status rather than a 200 stream.
            first = await queue.get()
        except BaseException:
            stop.cancel()
            lease.release()
            raise
        if first[0] == "error":
            lease.release()
            raise first[1]
        async def close() -> None:  # also when the client left before the first event
            stop.cancel()
            lease.release()

        return EventStreamResponse(self._events(first, queue, stop, worker, lease),
                                   drain=self.drain, on_abort=lambda: shutdown_event("error"),
                                   on_close=close)

    async def _events(self, first: _Item, queue: asyncio.Queue[_Item], stop: Cancellation,
                      worker: threading.Thread, lease: Lease) -> AsyncIterator[bytes]:
        item = first
        try:
            while True:
                if item[0] == "end":
                    break
                if item[0] == "error":
                    yield sse_event(reply_for(item[1]).body, "error")
                    break
                yield _frame(item[1])
                item = await queue.get()
        finally:
            stop.cancel()  # aborts every model call in flight: the join below is quick
            if worker.is_alive():
                await asyncio.to_thread(worker.join)
            lease.release()

    def _work(self, task: str, body: TaskRequest, text: str, model: str, stop: Cancellation,
              put: Callable[[_Item], None]) -> None:
        """The worker thread: run the task, hand over each event, stop when asked."""
        try:
            events = self.runner.stream(task, text, model=model, lang=body.lang,
                                        to=body.to, quick=body.quick, save=body.save,
                                        source=body.source or body.url, cancel=stop,
                                        options=body.options, context=body.context,
                                        **body.sampling())
            try:
                for event in events:
                    if stop.cancelled:
                        break
                    put(("event", event))
            finally:
                close = getattr(events, "close", None)
                if callable(close):
                    close()  # closes the engine stream at once when we left early
        except BaseException as exc:  # every failure becomes the stream's error event
            if not stop.cancelled:
                put(("error", exc))
            return
        if not stop.cancelled:
            put(("end", None))


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
