"""Continuous batching: one thread per model owns the llama_context and runs every request.

The scheduler is four parts, each with its own state, wired here:

- :class:`~localloom.engine.admission.AdmissionQueue`: thread-safe submit and cancel, the
  capacity rule, first-come-first-served admission; every request state change;
- :class:`~localloom.engine.steploop.StepLoop`: batch, decode, sample, speculate (the
  scheduler thread's work);
- :class:`~localloom.engine.detok.SeqText`: per-sequence detokenizing, stop strings, deltas;
- :class:`~localloom.engine.outbox.Outbox`: delivery to each request's sink after a step.

Requests and sequences carry one state field each (:mod:`localloom.engine.task`).

Example::

    scheduler = Scheduler(model, ctx, max_queue=32)
    scheduler.submit(GenerationRequest(prompt, params, samplers, 64, (), events.put))
    ...
    scheduler.close()
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass

from localloom.engine.admission import AdmissionQueue, Ticket
from localloom.engine.events import RequestFailed
from localloom.engine.runtime import LlamaContext, LlamaModel
from localloom.engine.steploop import StepLoop, StepStats
from localloom.engine.task import GenerationRequest
from localloom.engine.threads import ThreadGovernor
from localloom.errors import EngineError, GenerationInterrupted, ModelNotLoadedError

__all__ = ["Scheduler", "SchedulerStats"]


@dataclass
class SchedulerStats(StepStats):
    """The step loop's counters, with the queue's request counts at the time of reading."""

    running: int = 0
    waiting: int = 0


class Scheduler:
    """Owns one llama_context; ``submit`` from any thread, events arrive on the sinks."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext, *, max_queue: int,
                 name: str = "model", prefix_cache: bool = True, lookup: str = "auto",
                 threads: ThreadGovernor | None = None) -> None:
        self.ctx = ctx
        self.queue = AdmissionQueue(ctx.n_parallel, max_queue)
        # LOCALLOOM_STEP_PIPELINE=0/1: a diagnostic override of the step loop's pipeline
        # (run bench/gpu/run_device.sh with it set to compare); unset, the loop decides.
        forced = os.environ.get("LOCALLOOM_STEP_PIPELINE", "").strip()
        self.steps = StepLoop(model, ctx, self.queue, prefix_cache=prefix_cache,
                              lookup=lookup, threads=threads,
                              pipeline=None if forced not in ("0", "1") else forced == "1")
        self._thread = threading.Thread(target=self._loop, name=f"localloom-{name}",
                                        daemon=True)
        self._thread.start()

    @property
    def stats(self) -> SchedulerStats:
        """A snapshot of the counters and of the running and waiting requests."""
        running, waiting = self.queue.counts()
        return SchedulerStats(**dataclasses.asdict(self.steps.stats), running=running,
                              waiting=waiting)

    # ------------------------------------------------------------ any thread

    def submit(self, req: GenerationRequest) -> Ticket:
        """Queue a request; its ticket cancels it. ServerBusyError when the waiting queue is
        full."""
        queue: AdmissionQueue = self.queue
        return queue.submit(req)

    def cancel(self, req: GenerationRequest, error: BaseException | None = None) -> None:
        """End ``req`` at the next step; ``error`` (if any) is sent to its sink."""
        self.queue.cancel(req, error)

    def interrupt(self) -> None:
        """Stop every waiting and running request with GenerationInterrupted."""
        for req in self.queue.requests():
            self.queue.cancel(req, GenerationInterrupted("The generation was interrupted "
                                                         "(engine.interrupt)."))

    def close(self) -> None:
        """Fail outstanding requests and stop the thread (the caller frees the context)."""
        self.queue.close()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    # ---------------------------------------------------------- scheduler thread

    def _loop(self) -> None:
        steps = self.steps
        try:
            while self._sync():
                steps.step()  # delivers the previous step's events as it decodes
        except BaseException as exc:  # keep consumers from waiting forever
            self._fail_all(EngineError(f"The generation loop failed: {exc!r}. Reload the "
                                       "model; report the error if it repeats."))
            raise
        finally:
            self._fail_all(ModelNotLoadedError("The model was unloaded while this request "
                                               "ran. Load it again and retry."))
            steps.outbox.flush()
            steps.close()

    def _sync(self) -> bool:
        """Take cancellations and admit waiting requests; sleeps until a request runs;
        False once closing."""
        queue, steps = self.queue, self.steps
        if steps.busy and not queue.has_news:
            return True  # the common step: nothing new, so no lock
        while True:
            busy = steps.busy
            if not busy:
                steps.outbox.flush()  # the last step's events go out before the thread sleeps
            if not queue.wait(busy):
                return False
            for req, error in queue.take_cancels():
                steps.end(req, error)  # its slots are free before anything else is admitted
            for req in queue.admit(steps.free_slots):
                steps.admit(req)
            if steps.busy:
                return True

    def _fail_all(self, error: BaseException) -> None:
        self.steps.fail_all(error)
        for req in self.queue.drain():
            req.sink(RequestFailed(error))
