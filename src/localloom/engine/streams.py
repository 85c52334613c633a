"""Result delivery: sync and async streams, and whole-response collectors.

The scheduler thread pushes events into a ``queue.SimpleQueue`` (sync callers) or, through
``loop.call_soon_threadsafe``, into an ``asyncio.Queue`` (async callers). Closing a stream,
dropping it, or cancelling the awaiting task cancels the request, which frees its slot at
the scheduler's next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from localloom.engine.events import Event, RequestEnd, RequestFailed
from localloom.engine.protocol import Usage

__all__ = [
    "Assembler",
    "AsyncStream",
    "BufferedSink",
    "Cancellable",
    "Stream",
    "acollect",
    "async_sink",
    "collect",
    "resolve_future",
]

T = TypeVar("T")


class Cancellable(Protocol):
    """What a stream or collector stops when nobody wants the rest: a queued request's
    :class:`~localloom.engine.admission.Ticket`, or an upstream's call."""

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop generating (thread-safe, idempotent); ``error`` (if any) is raised to the
        reader."""


class Assembler(Protocol[T]):
    """What turns events into chunks (streams) or one result (whole responses)."""

    def chunks(self, ev: Event) -> list[T]:
        """Stream chunks for one event."""

    def add(self, ev: Event) -> None:
        """Accumulate one event."""

    def result(self) -> Any:
        """The whole response."""

    @property
    def usage(self) -> Usage | None:
        """Token counts, once :meth:`add` has seen the request's end."""


class _ChunkBuffer(Generic[T]):
    """What both stream kinds share: turning events into pending chunks."""

    def __init__(self, request: Cancellable, assembler: Assembler[T]) -> None:
        self._request = request
        self._assembler = assembler
        self._pending: deque[T] = deque()
        self._done = False

    def _take(self, ev: Event) -> None:
        if isinstance(ev, RequestFailed):
            self._done = True
            raise ev.error
        if isinstance(ev, RequestEnd):
            self._done = True
            self._assembler.add(ev)  # keeps the usage, asked for in a chunk or not
        self._pending.extend(self._assembler.chunks(ev))

    @property
    def usage(self) -> Usage | None:
        """The request's token counts once the stream has ended (None before), whether or
        not ``stream_options.include_usage`` put them in a chunk too."""
        return self._assembler.usage

    def __del__(self) -> None:
        if not self._done:  # dropped unfinished: stop generating for nobody
            self._request.cancel()


class Stream(_ChunkBuffer[T]):
    """Iterator of response chunks. ``close()`` or leaving a ``with`` block cancels.

    Example::

        with engine.chat.completions.create(messages=msgs, stream=True) as stream:
            for chunk in stream:
                print(chunk.choices[0].delta.content or "", end="")
    """

    def __init__(self, request: Cancellable, events: queue.SimpleQueue[Event],
                 assembler: Assembler[T]) -> None:
        super().__init__(request, assembler)
        self._events = events

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while not self._pending:
            if self._done:
                raise StopIteration
            try:
                ev = self._events.get()
            except BaseException:  # KeyboardInterrupt while waiting: stop generating
                self.close()
                raise
            self._take(ev)
        return self._pending.popleft()

    def close(self) -> None:
        """Stop the generation now and free its slot."""
        self._done = True
        self._request.cancel()

    def abort(self, error: BaseException) -> None:
        """Stop the generation from another thread: the thread iterating gets ``error``."""
        self._request.cancel(error)

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_ChunkBuffer[T]):
    """Async iterator of response chunks; ``aclose()`` or task cancellation cancels.

    Example::

        stream = await engine.chat.completions.create(messages=msgs, stream=True)
        async for chunk in stream:
            print(chunk.choices[0].delta.content or "", end="")
    """

    def __init__(self, request: Cancellable, events: asyncio.Queue[Event],
                 assembler: Assembler[T]) -> None:
        super().__init__(request, assembler)
        self._events = events

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            try:
                ev = await self._events.get()
            except BaseException:  # task cancelled: cancel the sequence too
                await self.aclose()
                raise
            self._take(ev)
        return self._pending.popleft()

    async def aclose(self) -> None:
        """Stop the generation now and free its slot."""
        self._done = True
        self._request.cancel()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BufferedSink:
    """Sink for whole (non-stream) responses: buffers events and wakes the waiter once,
    at the end, instead of once per token."""

    def __init__(self, notify: Callable[[], object]) -> None:
        self.events: list[Event] = []
        self._notify = notify

    def __call__(self, ev: Event) -> None:
        self.events.append(ev)
        if isinstance(ev, RequestEnd | RequestFailed):
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody to tell
                self._notify()


def _assemble(events: list[Event], assembler: Assembler[Any]) -> Any:
    for ev in events:
        if isinstance(ev, RequestFailed):
            raise ev.error
        assembler.add(ev)
    return assembler.result()


def collect(request: Cancellable, sink: BufferedSink, done: threading.Event,
            assembler: Assembler[Any]) -> Any:
    """Wait until ``request`` ends and return the whole response."""
    try:
        done.wait()
    finally:
        request.cancel()  # no-op once finished; frees the slot on KeyboardInterrupt
    return _assemble(sink.events, assembler)


async def acollect(request: Cancellable, sink: BufferedSink, done: asyncio.Future[None],
                   assembler: Assembler[Any]) -> Any:
    """Async :func:`collect`; cancelling the awaiting task cancels the request."""
    try:
        await done
    finally:
        request.cancel()
    return _assemble(sink.events, assembler)


def resolve_future(fut: asyncio.Future[None]) -> None:
    """Mark ``fut`` done (called on its loop)."""
    if not fut.done():
        fut.set_result(None)


class async_sink:
    """A stream sink that hands events to an event loop's queue from the scheduler thread.

    The scheduler batches: it calls ``put`` for every stream of ``loop`` from one
    ``call_soon_threadsafe`` per step; calling the sink itself wakes the loop once per event.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, events: asyncio.Queue[Event]) -> None:
        self.loop = loop
        self.put = events.put_nowait  # only on the loop's thread
        self.request: Cancellable | None = None

    def __call__(self, ev: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.put, ev)
        except RuntimeError:  # the loop is closed: nobody listens, stop generating
            if self.request is not None:
                self.request.cancel()
