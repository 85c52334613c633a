"""The outbox on its own: order, one wake-up per event loop, closed loops, sink types."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable, Iterator

import pytest
from typing_extensions import TypeVarTuple, Unpack

from localloom.engine.events import ChoiceEnd, Delta, Event, RequestEnd
from localloom.engine.outbox import LoopSink, Outbox, Route
from localloom.engine.streams import BufferedSink, async_sink

_Ts = TypeVarTuple("_Ts")


class CountingLoop(asyncio.SelectorEventLoop):
    """A real event loop that counts wake-ups from other threads."""

    wakeups = 0

    def call_soon_threadsafe(self, callback: Callable[[Unpack[_Ts]], object],
                             *args: Unpack[_Ts],
                             context: contextvars.Context | None = None) -> asyncio.Handle:
        self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


class LoopQueue:
    """A loop sink that records which thread each event arrived on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.got: list[Event] = []
        self.threads: set[int] = set()
        self.direct: list[Event] = []

    def put(self, ev: Event) -> None:
        self.got.append(ev)
        self.threads.add(threading.get_ident())

    def __call__(self, ev: Event) -> None:
        self.direct.append(ev)


@pytest.fixture
def running_loop() -> Iterator[tuple[CountingLoop, int]]:
    loop = CountingLoop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    yield loop, thread.ident or 0
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def _settle(loop: asyncio.AbstractEventLoop) -> None:
    """Wait until the loop has run everything handed to it so far."""
    done = threading.Event()
    loop.call_soon_threadsafe(done.set)
    assert done.wait(5)


def test_plain_sinks_get_their_events_in_order_at_flush() -> None:
    outbox = Outbox()
    a: list[Event] = []
    b: queue.SimpleQueue[Event] = queue.SimpleQueue()
    to_a, to_b = Route.of(a.append), Route.of(b.put)
    outbox.post((to_a, Delta(0, "x")))
    outbox.post((to_b, Delta(0, "y")))
    outbox.post((to_a, ChoiceEnd(0, "stop", 1)))
    assert a == [] and len(outbox) == 3  # nothing before the flush
    outbox.flush()
    assert a == [Delta(0, "x"), ChoiceEnd(0, "stop", 1)]
    assert b.get_nowait() == Delta(0, "y")
    outbox.post((to_a, RequestEnd(3, 1)))  # posting still works after a flush
    outbox.flush()
    assert a[-1] == RequestEnd(3, 1) and len(outbox) == 0


def test_every_sink_of_one_loop_shares_one_wake_up_per_flush(
        running_loop: tuple[CountingLoop, int]) -> None:
    loop, loop_thread = running_loop
    outbox = Outbox()
    sinks = [LoopQueue(loop) for _ in range(3)]
    for i in range(10):
        for sink in sinks:
            outbox.post((Route.of(sink), Delta(0, str(i))))
    before = loop.wakeups
    outbox.flush()
    assert loop.wakeups - before == 1
    _settle(loop)
    for sink in sinks:
        assert [ev.text for ev in sink.got if isinstance(ev, Delta)] == [str(i)
                                                                         for i in range(10)]
        assert sink.threads == {loop_thread} and sink.direct == []


def test_sinks_of_a_closed_loop_are_called_directly() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    sink = LoopQueue(loop)
    outbox = Outbox()
    outbox.post((Route.of(sink), Delta(0, "late")))
    outbox.flush()
    assert sink.direct == [Delta(0, "late")] and sink.got == []


def test_the_engine_sinks_are_routed_by_their_type() -> None:
    loop = asyncio.new_event_loop()
    try:
        stream_sink = async_sink(loop, asyncio.Queue())
        assert isinstance(stream_sink, LoopSink)
        assert Route.of(stream_sink).looped is stream_sink
        assert Route.of(BufferedSink(lambda: None)).looped is None
        plain: queue.SimpleQueue[Event] = queue.SimpleQueue()
        assert Route.of(plain.put).looped is None
    finally:
        loop.close()
