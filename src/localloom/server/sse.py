"""Server-sent events and disconnect handling shared by every endpoint group.

Two helpers stop work the moment nobody wants it any more:

* :class:`EventStreamResponse` sends an async iterator of events while watching the
  connection; a client disconnect (or the drain deadline) cancels the iterator at once, so
  its ``finally`` closes the engine stream and frees the decode slot.
* :func:`until_disconnected` does the same for a non-streaming call.

Example::

    async def events() -> AsyncIterator[bytes]:
        yield sse_event({"progress": 0.5})
    return EventStreamResponse(events(), drain=drain, on_abort=lambda: sse_event(...))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from localloom.errors import GenerationInterrupted
from localloom.server.drain import Drain
from localloom.server.errors import error_body

__all__ = [
    "CLIENT_CLOSED",
    "DONE",
    "END",
    "EventStreamResponse",
    "aclose_stream",
    "next_chunk",
    "shutdown_event",
    "sse_event",
    "until_disconnected",
]

logger = logging.getLogger("localloom.server")
T = TypeVar("T")
Outcome = Literal["done", "gone", "aborted"]
DONE = b"data: [DONE]\n\n"
# nginx's "client closed request": only ever seen in metrics, the client is gone.
CLIENT_CLOSED = 499


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One SSE frame; ``data`` is JSON-encoded unless already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def shutdown_event(event: str | None = None) -> bytes:
    """The error event an open stream gets when the drain deadline passes."""
    body = error_body("The server is shutting down; this stream was cut off. Retry against the "
                      "restarted server.", "server_error", code="server_shutting_down")
    return sse_event(body, event)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _watch(work: asyncio.Future[Any], receive: Receive, drain: Drain) -> Outcome:
    """Wait for ``work``, a client disconnect or the drain deadline; cancel work that lost."""
    gone: asyncio.Future[Any] = asyncio.ensure_future(_wait_disconnect(receive))
    aborted: asyncio.Future[Any] = asyncio.ensure_future(drain.aborted.wait())
    try:
        await asyncio.wait({work, gone, aborted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (gone, aborted):
            waiter.cancel()
        if not work.done():
            work.cancel()
        await asyncio.gather(work, return_exceptions=True)
    if gone.done() and not gone.cancelled():
        return "gone"
    return "aborted" if work.cancelled() else "done"


async def until_disconnected(request: Request, drain: Drain, work: Awaitable[T]) -> T | None:
    """Run ``work``; cancel it if the client goes away (None) or the drain deadline passes.

    The request body must already be read (FastAPI reads it before the endpoint runs).
    """
    task = asyncio.ensure_future(work)
    outcome = await _watch(task, request.receive, drain)
    if outcome == "aborted":
        raise GenerationInterrupted("The server is shutting down; the request was cancelled. "
                                    "Retry against the restarted server.")
    return task.result() if outcome == "done" else None


class EventStreamResponse(Response):
    """``text/event-stream`` that stops its producer when the client leaves."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], *, drain: Drain,
                 on_abort: Callable[[], bytes] = shutdown_event,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.events = events
        self.drain = drain
        self.on_abort = on_abort
        # Runs however the response ends, even when the client left before the first
        # byte: an async generator that never started never runs its own ``finally``.
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send events until the iterator ends, the client leaves, or the drain deadline."""
        try:
            await self._respond(receive, send)
        finally:
            if self.on_close is not None:
                await self.on_close()

    async def _respond(self, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        pump = asyncio.ensure_future(self._pump(send))
        outcome = await _watch(pump, receive, self.drain)
        if outcome == "gone":
            return
        error = None if pump.cancelled() else pump.exception()
        if error is not None and not isinstance(error, OSError):
            logger.error("A server-sent event stream failed", exc_info=error)
        with contextlib.suppress(OSError):
            if outcome == "aborted":  # cut off by the drain deadline
                await send({"type": "http.response.body", "body": self.on_abort(),
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        try:
            async for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        finally:
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()


# What next_chunk returns after an engine stream's last chunk.
END = object()


async def next_chunk(stream: AsyncIterator[Any]) -> Any:
    """The stream's next chunk, or :data:`END` once it is exhausted (an awaitable that
    ``until_disconnected`` can race against the client leaving)."""
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return END


async def aclose_stream(stream: object) -> None:
    """Close an engine stream if it can be closed (idempotent for the engine's streams)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
