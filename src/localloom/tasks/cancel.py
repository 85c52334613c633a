"""Stopping a whole task at once: every model call it runs, in every thread.

A map-reduce task over a long text runs several model calls at once in worker threads;
when its client goes away, finishing them is minutes of work for nobody (a dropped 1 MB
summarize kept all 8 slots busy for 261 s). A :class:`Cancellation` is shared by those
calls: ``cancel()`` from any thread aborts each engine stream in flight (its slot is freed
at the scheduler's next step, also mid-prefill) and makes every later call fail at once.

Example::

    cancel = Cancellation()
    threading.Timer(5, cancel.cancel).start()
    runner.run("summarize", long_text, cancel=cancel)   # GenerationInterrupted after ~5 s
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from localloom.errors import GenerationInterrupted

__all__ = ["Cancellation"]


class Cancellation:
    """A thread-safe stop signal for the model calls of one task."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._streams: set[Any] = set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def cancel(self) -> None:
        """Stop every call in flight and every later one (idempotent, any thread)."""
        with self._lock:
            self._event.set()
            streams = list(self._streams)
        for stream in streams:
            stream.abort(_interrupted())

    def check(self) -> None:
        """Raise :class:`GenerationInterrupted` once cancelled."""
        if self._event.is_set():
            raise _interrupted()

    @contextmanager
    def track(self, stream: Any) -> Iterator[None]:
        """Abort ``stream`` (an engine stream with ``abort(error)``) if the task is
        cancelled while it runs."""
        with self._lock:
            self._streams.add(stream)
            cancelled = self._event.is_set()
        if cancelled:
            stream.abort(_interrupted())
        try:
            yield
        finally:
            with self._lock:
                self._streams.discard(stream)


def _interrupted() -> GenerationInterrupted:
    return GenerationInterrupted("The task was cancelled (its client left or the server is "
                                 "stopping).")
