"""The admission queue: thread-safe submit and cancel, the capacity rule, admission.

Any thread submits or cancels; the scheduler thread takes the cancellations and admits
waiting requests into free slots, first come first served. Every request state change
happens here, under one lock, so a cancel never races with an admission or an end.

Capacity: the sequences of waiting and running requests may not exceed ``n_parallel +
max_queue``. It is counted from the requests' states (a cancelled request gives its share
back at once, before its slots are freed), so there is no counter to keep in step.

Example::

    queue = AdmissionQueue(n_parallel=4, max_queue=8)
    ticket = queue.submit(req)   # ServerBusyError when full
    ticket.cancel()              # from any thread: the same as queue.cancel(req)
    queue.admit(free=4)          # [req], now RUNNING (scheduler thread)
    queue.finish(req, RequestState.FINISHED)
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from localloom.engine.events import RequestFailed
from localloom.engine.task import GenerationRequest, RequestState
from localloom.errors import ModelNotLoadedError, ServerBusyError

__all__ = ["AdmissionQueue", "Ticket"]

Cancel = tuple[GenerationRequest, BaseException | None]


@dataclass(frozen=True)
class Ticket:
    """A submitted request with the queue that runs it: what its stream holds to stop it
    (the request itself does not know its queue)."""

    queue: AdmissionQueue
    request: GenerationRequest

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop generating and free the slots at the next step (thread-safe, idempotent)."""
        self.queue.cancel(self.request, error)


class AdmissionQueue:
    """Waiting requests, the running ones' registry, and pending cancellations."""

    def __init__(self, n_parallel: int, max_queue: int) -> None:
        self.n_parallel = n_parallel
        self.max_queue = max_queue
        self._cond = threading.Condition()
        self._waiting: deque[GenerationRequest] = deque()
        self._running: set[GenerationRequest] = set()  # RUNNING or CANCELLING
        self._cancels: list[Cancel] = []
        self._closing = False

    # ------------------------------------------------------------ any thread

    def submit(self, req: GenerationRequest) -> Ticket:
        """Queue a request and return its ticket; ServerBusyError when the queue is full
        (its samplers are then freed), ModelNotLoadedError once the model is being
        unloaded."""
        with self._cond:
            if self._closing:
                self._refuse(req)
                raise ModelNotLoadedError("The model was unloaded. Load it again "
                                          "(engine.reload) and retry.")
            waiting = sum(r.n for r in self._waiting)
            busy = sum(r.n for r in self._running if r.state.holds_capacity)
            if waiting + busy + req.n > self.n_parallel + self.max_queue:
                self._refuse(req)
                raise ServerBusyError(
                    f"All {self.n_parallel} sequences of this model are busy and its queue "
                    f"is full ({waiting} of {self.max_queue} places taken; "
                    "LOCALLOOM_MAX_QUEUE sets the size). Retry in a moment.", retry_after=1.0)
            req.move(RequestState.WAITING)
            self._waiting.append(req)
            self._cond.notify()
        return Ticket(self, req)

    def cancel(self, req: GenerationRequest, error: BaseException | None = None) -> None:
        """End ``req``: a waiting one now, a running one at the scheduler's next step;
        ``error`` (if any) goes to its sink. Idempotent; ended requests are left alone."""
        with self._cond:
            if req.state is RequestState.WAITING:
                self._waiting.remove(req)
                req.move(RequestState.CANCELLED)
                req.free_samplers()
                if error is not None:
                    req.sink(RequestFailed(error))
            elif req.state is RequestState.RUNNING:
                req.move(RequestState.CANCELLING)
                self._cancels.append((req, error))
                self._cond.notify()

    def requests(self) -> list[GenerationRequest]:
        """Every waiting and running request (a snapshot)."""
        with self._cond:
            return [*self._waiting, *self._running]

    def running(self) -> list[GenerationRequest]:
        """The admitted requests that have not ended (a snapshot)."""
        with self._cond:
            return list(self._running)

    def counts(self) -> tuple[int, int]:
        """(running, waiting) requests."""
        with self._cond:
            return len(self._running), len(self._waiting)

    def close(self) -> None:
        """Refuse new requests; the scheduler thread stops at its next look."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    # ---------------------------------------------------------- scheduler thread

    @property
    def has_news(self) -> bool:
        """Whether there is anything to take; read without the lock (each read is atomic,
        and a change missed now is seen at the next step)."""
        return bool(self._waiting or self._cancels or self._closing)

    def wait(self, busy: bool) -> bool:
        """Block while there is nothing to do (not ``busy`` and no news); False once
        closing."""
        with self._cond:
            while not (busy or self._closing or self._cancels or self._waiting):
                self._cond.wait()
            return not self._closing

    def take_cancels(self) -> list[Cancel]:
        """The cancellations asked since the last call, oldest first."""
        with self._cond:
            cancels, self._cancels = self._cancels, []
        return cancels

    def admit(self, free: int) -> list[GenerationRequest]:
        """Waiting requests, in order, while their choices fit in ``free`` slots; they are
        RUNNING when returned."""
        admitted = []
        with self._cond:
            while self._waiting and self._waiting[0].n <= free:
                req = self._waiting.popleft()
                req.move(RequestState.RUNNING)
                self._running.add(req)
                free -= req.n
                admitted.append(req)
        return admitted

    def finish(self, req: GenerationRequest, state: RequestState) -> None:
        """A running request ended (FINISHED or CANCELLED); it leaves the registry."""
        with self._cond:
            req.move(state)
            self._running.discard(req)

    def drain(self) -> list[GenerationRequest]:
        """Close, and end every waiting request (CANCELLED, samplers freed); the caller
        tells their sinks why."""
        with self._cond:
            self._closing = True
            waiting, self._waiting = list(self._waiting), deque()
            for req in waiting:
                req.move(RequestState.CANCELLED)
                req.free_samplers()
        return waiting

    @staticmethod
    def _refuse(req: GenerationRequest) -> None:
        req.move(RequestState.CANCELLED)
        req.free_samplers()
