"""The step loop on its own (no Engine, no scheduler thread) on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sched_helpers import ends, model_request, run_all, texts, tiny_context

from localloom.engine.admission import AdmissionQueue
from localloom.engine.events import Event, RequestEnd, RequestFailed
from localloom.engine.runtime import LlamaContext, LlamaModel
from localloom.engine.steploop import StepLoop
from localloom.engine.task import RequestState, SeqState
from localloom.errors import GenerationInterrupted

PROMPTS = ["the cat and", "one two three", "hello the model", "data world text"]
NO_EOS = {"2": -100}
N_PARALLEL = 4


@pytest.fixture(scope="module")
def loaded(tiny_gguf: Path) -> Iterator[tuple[LlamaModel, LlamaContext]]:
    with tiny_context(tiny_gguf, n_parallel=N_PARALLEL, n_ctx=384) as pair:
        yield pair


def _loop(loaded: tuple[LlamaModel, LlamaContext], lookup: str = "off"
          ) -> tuple[AdmissionQueue, StepLoop]:
    model, ctx = loaded
    queue = AdmissionQueue(ctx.n_parallel, max_queue=8)
    return queue, StepLoop(model, ctx, queue, lookup=lookup)


def _alone(loaded: tuple[LlamaModel, LlamaContext], prompt: str, **fields: object) -> str:
    queue, steps = _loop(loaded)
    events: list[Event] = []
    queue.submit(model_request(loaded[0], prompt, events.append, **fields))
    run_all(queue, steps)
    return texts(events)[0]


def test_a_request_steps_to_its_answer_and_gives_its_slot_back(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    queue, steps = _loop(loaded)
    events: list[Event] = []
    req = model_request(loaded[0], "the cat and", events.append, max_tokens=12,
                        logit_bias=NO_EOS)
    queue.submit(req)
    assert run_all(queue, steps) == 12  # the prefill samples the first token
    choice_ends, request_ends = ends(events)
    assert [(c.finish_reason, c.completion_tokens) for c in choice_ends] == [("length", 12)]
    assert request_ends == [RequestEnd(len(req.prompt), 12, 0)]
    assert isinstance(events[-1], RequestEnd)  # the last event
    assert texts(events)[0]
    assert req.state is RequestState.FINISHED and req.seqs[0].state is SeqState.FINISHED
    assert steps.free_slots == N_PARALLEL and not steps.busy
    assert queue.counts() == (0, 0)


def test_a_steps_events_are_delivered_while_the_next_step_decodes(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    queue, steps = _loop(loaded)
    events: list[Event] = []
    queue.submit(model_request(loaded[0], "the cat and", events.append, logit_bias=NO_EOS))
    for req in queue.admit(steps.free_slots):
        steps.admit(req)
    steps.step()
    assert events == [] and len(steps.outbox) == 1  # the first token's delta waits
    steps.step()
    assert len(events) == 1  # sent as the second step began
    run_all(queue, steps)


def test_requests_batched_together_get_their_answers_alone(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    alone = [_alone(loaded, p, max_tokens=20) for p in PROMPTS]
    queue, steps = _loop(loaded)
    sinks: list[list[Event]] = [[] for _ in PROMPTS]
    for prompt, sink in zip(PROMPTS, sinks, strict=True):
        queue.submit(model_request(loaded[0], prompt, sink.append, max_tokens=20))
    taken = run_all(queue, steps)
    assert [texts(sink)[0] for sink in sinks] == alone
    assert taken <= 20  # one batch per step, not one request after another


def test_n_choices_share_one_prefill_and_each_ends(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    queue, steps = _loop(loaded)
    events: list[Event] = []
    req = model_request(loaded[0], "the cat and", events.append, n=3, temperature=1.0,
                        seed=4, max_tokens=10, logit_bias=NO_EOS)
    queue.submit(req)
    run_all(queue, steps)
    choice_ends, request_ends = ends(events)
    assert sorted(c.choice for c in choice_ends) == [0, 1, 2]
    assert steps.stats.prompt_tokens_total == len(req.prompt)  # prefilled once, copied
    assert request_ends == [RequestEnd(len(req.prompt), 30, 0)]
    assert len(set(texts(events, 3))) > 1  # the choices sample apart


def test_the_end_of_generation_token_ends_a_choice_with_stop(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    queue, steps = _loop(loaded)
    events: list[Event] = []
    req = model_request(loaded[0], "the cat and", events.append, logit_bias={"2": 100})
    queue.submit(req)
    assert run_all(queue, steps) == 1
    choice_ends, _ = ends(events)
    assert [(c.finish_reason, c.completion_tokens) for c in choice_ends] == [("stop", 1)]
    assert texts(events) == [""]


def test_a_stop_string_ends_the_choice_before_it(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    full = _alone(loaded, "one two three", max_tokens=30, logit_bias=NO_EOS)
    stop = full[12:14]
    queue, steps = _loop(loaded)
    events: list[Event] = []
    queue.submit(model_request(loaded[0], "one two three", events.append, max_tokens=30,
                               logit_bias=NO_EOS, stops=(stop,)))
    run_all(queue, steps)
    assert texts(events)[0] == full[:full.index(stop)]
    assert ends(events)[0][0].finish_reason == "stop"


def test_a_cancelled_request_frees_every_slot_at_the_next_sync(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    queue, steps = _loop(loaded)
    events: list[Event] = []
    req = model_request(loaded[0], "the cat and", events.append, n=2, max_tokens=100,
                        logit_bias=NO_EOS)
    queue.submit(req)
    for admitted in queue.admit(steps.free_slots):
        steps.admit(admitted)
    for _ in range(3):
        steps.step()
    error = GenerationInterrupted("stopped")
    queue.cancel(req, error)
    assert req.state is RequestState.CANCELLING
    assert steps.free_slots == N_PARALLEL - 2  # until the scheduler thread takes it
    run_all(queue, steps)
    # mypy keeps the narrowing of req.state from above across run_all, which moves it
    assert req.state is RequestState.CANCELLED  # type: ignore[comparison-overlap]
    assert [s.state for s in req.seqs] == [SeqState.CANCELLED] * 2
    assert all(s.sampler is None for s in req.seqs)
    assert steps.free_slots == N_PARALLEL
    assert events[-1] == RequestFailed(error) and ends(events)[1] == []


def test_a_request_cancelled_mid_prefill_never_starts(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    queue, steps = _loop(loaded)
    streaming: list[Event] = []
    queue.submit(model_request(loaded[0], "the cat", streaming.append, max_tokens=40,
                               logit_bias=NO_EOS))
    for admitted in queue.admit(steps.free_slots):
        steps.admit(admitted)
    steps.step()
    events: list[Event] = []
    long = model_request(loaded[0], "the dog and the cat " * 10, events.append)
    queue.submit(long)
    for admitted in queue.admit(steps.free_slots):
        steps.admit(admitted)
    steps.step()  # a running stream: the long prompt goes in chunks
    assert long.seqs[0].state is SeqState.PREFILLING
    assert 0 < len(long.seqs[0].tokens) < len(long.prompt)
    queue.cancel(long)
    run_all(queue, steps)
    # mypy keeps the narrowing to PREFILLING across the calls that move the state
    assert long.seqs[0].state is SeqState.CANCELLED and events == []  # type: ignore[comparison-overlap]
    assert ends(streaming)[1]  # the other request finished normally
    assert steps.free_slots == N_PARALLEL


def test_a_deterministic_request_runs_alone_in_its_steps(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    alone = _alone(loaded, "hello the model", max_tokens=10, logit_bias=NO_EOS)
    queue, steps = _loop(loaded)
    other_events: list[Event] = []
    det_events: list[Event] = []
    other = model_request(loaded[0], "the cat and", other_events.append, max_tokens=10,
                          logit_bias=NO_EOS)
    det = model_request(loaded[0], "hello the model", det_events.append, max_tokens=10,
                        logit_bias=NO_EOS, deterministic=True)
    queue.submit(other)
    queue.submit(det)
    for admitted in queue.admit(steps.free_slots):
        steps.admit(admitted)
    while det.state is RequestState.RUNNING:
        steps.step()
        assert other.seqs[0].state is SeqState.PREFILLING  # not even its prompt ran
    run_all(queue, steps)
    assert texts(det_events)[0] == alone
    assert other.state is RequestState.FINISHED


def test_prompt_lookup_keeps_the_answer_in_fewer_steps(
        loaded: tuple[LlamaModel, LlamaContext]) -> None:
    prompt = "the cat and the dog and the cat and the dog and the model text " * 4
    results = []
    for mode in ("off", "on"):
        queue, steps = _loop(loaded, lookup=mode)
        events: list[Event] = []
        queue.submit(model_request(loaded[0], prompt, events.append, max_tokens=100,
                                   logit_bias=NO_EOS, prompt_lookup=True))
        taken = run_all(queue, steps)
        results.append((taken, texts(events)[0], steps.stats.lookup_accepted))
    (plain_steps, plain_text, _), (fast_steps, fast_text, accepted) = results
    assert fast_text == plain_text
    assert accepted > 0 and fast_steps == plain_steps - accepted
