"""The admission queue on its own: capacity, first come first served, cancel, close."""

from __future__ import annotations

import random
import threading

import pytest
from sched_helpers import queued_request

from localloom.engine.admission import AdmissionQueue
from localloom.engine.events import Event, RequestFailed
from localloom.engine.task import GenerationRequest, RequestState
from localloom.errors import GenerationInterrupted, ModelNotLoadedError, ServerBusyError


def test_the_queue_holds_n_parallel_plus_max_queue_sequences_and_refuses_more() -> None:
    queue = AdmissionQueue(n_parallel=2, max_queue=3)
    events: list[Event] = []
    accepted = [queued_request(events.append, n=2), queued_request(events.append, n=3)]
    for req in accepted:
        queue.submit(req)
    extra = queued_request(events.append)
    with pytest.raises(ServerBusyError, match="LOCALLOOM_MAX_QUEUE") as caught:
        queue.submit(extra)
    assert caught.value.retry_after > 0
    assert extra.state is RequestState.CANCELLED and extra.samplers == []  # freed
    assert [r.state for r in accepted] == [RequestState.WAITING] * 2
    assert queue.counts() == (0, 2)


def test_admission_is_first_come_first_served_while_choices_fit() -> None:
    queue = AdmissionQueue(n_parallel=4, max_queue=8)
    events: list[Event] = []
    reqs = [queued_request(events.append, n=n) for n in (2, 3, 1)]
    for req in reqs:
        queue.submit(req)
    # 2 fit in 4 free slots, 3 then do not: the 1 behind it waits its turn too.
    assert queue.admit(free=4) == reqs[:1]
    assert reqs[0].state is RequestState.RUNNING
    assert [r.state for r in reqs[1:]] == [RequestState.WAITING] * 2
    assert queue.admit(free=4) == reqs[1:]
    assert queue.counts() == (3, 0)
    for req in reqs:
        req.free_samplers()


def test_a_cancelled_waiting_request_ends_at_once_and_its_sink_hears_why() -> None:
    queue = AdmissionQueue(n_parallel=1, max_queue=2)
    events: list[Event] = []
    req = queued_request(events.append)
    ticket = queue.submit(req)
    assert ticket.request is req and ticket.queue is queue
    error = GenerationInterrupted("stopped")
    ticket.cancel(error)
    assert req.state is RequestState.CANCELLED and req.samplers == []
    assert events == [RequestFailed(error)]
    assert queue.admit(free=1) == []
    ticket.cancel(error)  # idempotent
    assert len(events) == 1


def test_cancelling_a_running_request_gives_its_capacity_back_before_its_slots() -> None:
    queue = AdmissionQueue(n_parallel=2, max_queue=0)
    events: list[Event] = []
    running = queued_request(events.append, n=2)
    ticket = queue.submit(running)
    queue.admit(free=2)
    with pytest.raises(ServerBusyError):
        queue.submit(queued_request(events.append))
    ticket.cancel()
    ticket.cancel()  # twice: one cancellation
    assert running.state is RequestState.CANCELLING
    follower = queued_request(events.append)
    queue.submit(follower)  # fits now, though the slots are not free yet
    assert queue.take_cancels() == [(running, None)]
    assert queue.take_cancels() == []
    queue.finish(running, RequestState.CANCELLED)
    assert queue.counts() == (0, 1)
    running.free_samplers()
    follower.free_samplers()


def test_a_request_that_finishes_before_its_cancel_is_taken_stays_finished() -> None:
    queue = AdmissionQueue(n_parallel=1, max_queue=0)
    events: list[Event] = []
    req = queued_request(events.append)
    ticket = queue.submit(req)
    queue.admit(free=1)
    ticket.cancel()
    queue.finish(req, RequestState.FINISHED)  # it ended in the step that raced the cancel
    assert req.state is RequestState.FINISHED
    ticket.cancel()  # an ended request is left alone
    assert req.state is RequestState.FINISHED and events == []
    req.free_samplers()


def test_cancelling_a_request_never_submitted_does_nothing() -> None:
    queue = AdmissionQueue(n_parallel=1, max_queue=1)
    events: list[Event] = []
    req = queued_request(events.append)
    queue.cancel(req, GenerationInterrupted("stopped"))
    assert req.state is RequestState.NEW and events == []
    req.free_samplers()


def test_a_closing_queue_refuses_new_requests_and_drains_the_waiting_ones() -> None:
    queue = AdmissionQueue(n_parallel=1, max_queue=4)
    events: list[Event] = []
    waiting = [queued_request(events.append) for _ in range(2)]
    for req in waiting:
        queue.submit(req)
    drained = queue.drain()
    assert drained == waiting
    assert all(r.state is RequestState.CANCELLED and r.samplers == [] for r in waiting)
    late = queued_request(events.append)
    with pytest.raises(ModelNotLoadedError, match="Load it again"):
        queue.submit(late)
    assert late.state is RequestState.CANCELLED
    assert not queue.wait(busy=False)  # the scheduler thread stops


def test_wait_sleeps_until_a_submit_from_another_thread() -> None:
    queue = AdmissionQueue(n_parallel=1, max_queue=1)
    events: list[Event] = []
    woke = threading.Event()

    def scheduler() -> None:
        assert queue.wait(busy=False)
        woke.set()

    thread = threading.Thread(target=scheduler)
    thread.start()
    assert not woke.wait(0.2)  # idle: it sleeps
    req = queued_request(events.append)
    queue.submit(req)
    assert woke.wait(5)
    thread.join(5)
    assert queue.has_news
    req.free_samplers()


def test_concurrent_submits_and_cancels_end_every_request_exactly_once() -> None:
    queue = AdmissionQueue(n_parallel=3, max_queue=5)
    events: list[Event] = []
    lock = threading.Lock()
    made: list[GenerationRequest] = []
    errors: list[BaseException] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            req = queued_request(events.append, n=rng.choice((1, 2)))
            with lock:
                made.append(req)
            try:
                ticket = queue.submit(req)
            except ServerBusyError:
                continue
            if rng.random() < 0.6:
                ticket.cancel()

    def scheduler(stop: threading.Event) -> None:
        try:  # what the scheduler thread does, with steps that end requests at once
            while not stop.is_set():
                for req, _ in queue.take_cancels():
                    if not req.state.ended:
                        queue.finish(req, RequestState.CANCELLED)
                for req in queue.admit(free=3):
                    queue.finish(req, RequestState.FINISHED)
        except BaseException as exc:  # an illegal transition would land here
            errors.append(exc)

    stop = threading.Event()
    sched = threading.Thread(target=scheduler, args=(stop,))
    sched.start()
    clients = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(30)
    while queue.counts() != (0, 0) and not errors:
        stop.wait(0.01)
    stop.set()
    sched.join(5)
    assert errors == []
    assert len(made) == 800
    assert all(r.state.ended for r in made)  # each one refused, cancelled or finished
    for req in made:
        req.free_samplers()
