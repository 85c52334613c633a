"""Delivery of a step's events to the requests' sinks, after the step.

The scheduler thread posts events while it samples; :meth:`Outbox.flush` hands them over
while the next ``llama_decode`` runs (without the GIL), so consumers wake while the model
computes instead of taking the GIL from the scheduler between steps.

A :class:`LoopSink` (an asyncio stream) gets its events through one
``call_soon_threadsafe`` shared by every sink of its event loop: 32 streams cost one
self-pipe write and one loop iteration per step instead of 32 of each.

Example::

    outbox = Outbox()
    route = Route.of(events.put)          # any callable taking an Event
    outbox.post((route, Delta(0, "Hi")))
    outbox.flush()                        # events.put(Delta(0, "Hi"))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

from localloom.engine.events import Event

__all__ = ["LoopSink", "Outbox", "Route", "Sink"]


class Sink(Protocol):
    """Where one request's events go; called on the scheduler thread."""

    def __call__(self, ev: Event, /) -> None:
        """Take one event."""


@runtime_checkable
class LoopSink(Sink, Protocol):
    """A sink whose consumer lives on an event loop: the outbox calls ``put`` on that
    loop's thread, batched with the other sinks of the loop. Calling the sink itself
    (outside a step) must be safe from any thread."""

    loop: asyncio.AbstractEventLoop

    def put(self, ev: Event, /) -> None:
        """Take one event, on ``loop``'s thread."""


class Route(NamedTuple):
    """A request's sink, and the same sink as a :class:`LoopSink` when it is one.

    Decided once per request, so delivering an event needs no type test."""

    sink: Sink
    looped: LoopSink | None

    @staticmethod
    def of(sink: Sink) -> Route:
        """The route to ``sink``."""
        return Route(sink, sink if isinstance(sink, LoopSink) else None)


def _deliver(items: list[tuple[LoopSink, Event]]) -> None:
    """On an event loop: hand each event to its stream's queue."""
    for sink, ev in items:
        sink.put(ev)


class Outbox:
    """Events posted during a step, delivered together by :meth:`flush`."""

    def __init__(self) -> None:
        self._items: list[tuple[Route, Event]] = []
        # The list's own append: posting an event (once per token) is one C call.
        self.post: Callable[[tuple[Route, Event]], None] = self._items.append

    def __len__(self) -> int:
        return len(self._items)

    def flush(self) -> None:
        """Deliver every posted event in order: plain sinks now, loop sinks through one
        wake-up per event loop. A closed loop's sinks are called directly (each handles
        that, e.g. by cancelling its request)."""
        if not self._items:
            return
        out = self._items.copy()
        self._items.clear()  # in place: ``post`` stays bound to this list
        loops: dict[asyncio.AbstractEventLoop, list[tuple[LoopSink, Event]]] = {}
        for (sink, looped), ev in out:
            if looped is None:
                sink(ev)
            else:
                loops.setdefault(looped.loop, []).append((looped, ev))
        for loop, items in loops.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:
                for looped_sink, ev in items:
                    looped_sink(ev)
