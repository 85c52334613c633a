"""Greedy picks made in the model's graph (engine/ondevice.py) give the host path's answers.

llama.cpp's backend sampling runs on whatever backend holds the output layer, the CPU here,
so the same code that serves a GPU is checked on the tiny model: every answer must equal
the host path's (numpy argmax over the copied logits rows), alone and batched, with and
without a logit bias, and next to requests that must stay on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sched_helpers import ends, model_request, run_all, texts, tiny_context

from localloom.engine.admission import AdmissionQueue
from localloom.engine.events import Delta, Event
from localloom.engine.runtime import LlamaContext, LlamaModel
from localloom.engine.steploop import StepLoop

PROMPTS = ["the cat and", "one two three", "hello the model", "data world text",
           "a b c d", "model text world", "three two one", "and the cat"]
NO_EOS = {"2": -100}
Pair = tuple[LlamaModel, LlamaContext]


@pytest.fixture(scope="module")
def host(tiny_gguf: Path) -> Iterator[Pair]:
    with tiny_context(tiny_gguf, n_parallel=8, n_ctx=8 * 64) as pair:
        yield pair


@pytest.fixture(scope="module")
def device(tiny_gguf: Path) -> Iterator[Pair]:
    with tiny_context(tiny_gguf, n_parallel=8, n_ctx=8 * 64, device_sampling=True) as pair:
        yield pair


def _run(pair: Pair, bodies: list[dict[str, object]], lookup: str = "off",
         pipeline: bool = False) -> tuple[list[list[Event]], StepLoop]:
    """Every request submitted at once, stepped to the end; the step loop is closed (its
    chains detached) so the next test's loop starts from a clean context."""
    model, ctx = pair
    queue = AdmissionQueue(ctx.n_parallel, max_queue=16)
    steps = StepLoop(model, ctx, queue, lookup=lookup, pipeline=pipeline)
    sinks: list[list[Event]] = [[] for _ in bodies]
    for body, sink in zip(bodies, sinks, strict=True):
        fields = dict(body)
        prompt = str(fields.pop("prompt"))
        queue.submit(model_request(model, prompt, sink.append, **fields))  # type: ignore[arg-type]
    run_all(queue, steps)
    steps.close()
    return sinks, steps


def _texts(sinks: list[list[Event]]) -> list[str]:
    return [texts(sink)[0] for sink in sinks]


@pytest.mark.parametrize("pipeline", [False, True], ids=["in-turn", "pipelined"])
@pytest.mark.parametrize("bias", [None, NO_EOS], ids=["no-bias", "eos-banned"])
def test_eight_batched_device_answers_equal_the_host_path_alone(
        host: Pair, device: Pair, bias: dict[str, int] | None, pipeline: bool) -> None:
    extra = {"logit_bias": bias} if bias else {}
    bodies: list[dict[str, object]] = [{"prompt": p, "max_tokens": 24, **extra} for p in PROMPTS]
    alone = [_texts(_run(host, [b])[0])[0] for b in bodies]
    batched, _ = _run(device, bodies, pipeline=pipeline)
    assert _texts(batched) == alone
    if bias:  # end-of-text banned: every answer runs to its limit
        assert [ends(s)[0][0].completion_tokens for s in batched] == [24] * len(PROMPTS)


def test_the_eligible_requests_sample_on_the_device_and_the_others_on_the_host(
        host: Pair, device: Pair) -> None:
    model, ctx = device
    queue = AdmissionQueue(ctx.n_parallel, max_queue=16)
    steps = StepLoop(model, ctx, queue)
    reqs = [model_request(model, "the cat and", lambda e: None, logit_bias=NO_EOS),
            model_request(model, "one two three", lambda e: None, logprobs=True),
            model_request(model, "hello the model", lambda e: None, temperature=0.8),
            model_request(model, "data world text", lambda e: None, n=2)]
    for req in reqs:
        queue.submit(req)
    for req in queue.admit(steps.free_slots):
        steps.admit(req)
    assert [[s.on_device for s in r.seqs] for r in reqs] == [[True], [False], [False],
                                                            [False, False]]
    run_all(queue, steps)
    steps.close()


def test_host_requests_beside_device_ones_keep_their_answers_and_logprobs(
        host: Pair, device: Pair) -> None:
    bodies: list[dict[str, object]] = [
        {"prompt": "the cat and", "max_tokens": 16, "logit_bias": NO_EOS},
        {"prompt": "one two three", "max_tokens": 16, "logprobs": 2},
        {"prompt": "hello the model", "max_tokens": 16, "temperature": 0.9, "seed": 7},
        {"prompt": "data world text", "max_tokens": 16}]
    want, _ = _run(host, bodies)
    got, _ = _run(device, bodies)
    assert _texts(got) == _texts(want)
    lps = [[lp for ev in sink if isinstance(ev, Delta) for lp in ev.logprobs or ()]
           for sink in (want[1], got[1])]
    assert lps[0] and lps[0] == lps[1]


def test_a_slot_that_sampled_on_the_device_serves_a_host_request_next(
        host: Pair, device: Pair) -> None:
    """The chain a slot keeps after a device request is taken off for the next, whose
    raw logits (logprobs, its own sampler) it needs."""
    first: list[dict[str, object]] = [{"prompt": p, "max_tokens": 8} for p in PROMPTS]
    second: list[dict[str, object]] = [
        {"prompt": p, "max_tokens": 12, "temperature": 0.7, "seed": 3, "logprobs": 1}
        for p in PROMPTS]
    model, ctx = device
    queue = AdmissionQueue(ctx.n_parallel, max_queue=16)
    steps = StepLoop(model, ctx, queue)
    for bodies in (first, second):
        sinks: list[list[Event]] = [[] for _ in bodies]
        for body, sink in zip(bodies, sinks, strict=True):
            fields = dict(body)
            prompt = str(fields.pop("prompt"))
            queue.submit(model_request(model, prompt, sink.append, **fields))  # type: ignore[arg-type]
        run_all(queue, steps)
    steps.close()
    want, _ = _run(host, second)
    assert _texts(sinks) == _texts(want)


def test_prompt_lookup_on_keeps_a_greedy_request_on_the_host(host: Pair, device: Pair) -> None:
    text = "one two three four five six seven eight nine ten " * 2
    body: dict[str, object] = {"prompt": text, "max_tokens": 24, "logit_bias": NO_EOS,
                               "prompt_lookup": True}
    want, _ = _run(host, [body], lookup="on")
    got, steps = _run(device, [body], lookup="on")
    assert _texts(got) == _texts(want)
    assert steps.stats.lookup_drafted > 0  # it guessed: it ran on the host


def test_the_pipeline_keeps_every_answer_its_ends_and_its_event_order(host: Pair) -> None:
    """Text work after the next launch: stop strings and logprobs stay in turn, the rest
    are deferred; each choice's events still end with its ChoiceEnd after all its text."""
    bodies: list[dict[str, object]] = [
        {"prompt": "the cat and", "max_tokens": 20, "logit_bias": NO_EOS},
        {"prompt": "one two three", "max_tokens": 20, "stop": ["e"]},
        {"prompt": "hello the model", "max_tokens": 20, "logprobs": 1},
        {"prompt": "data world text", "max_tokens": 1},
        {"prompt": "a b c d", "max_tokens": 20, "temperature": 0.9, "seed": 5}]
    want, _ = _run(host, bodies)
    got, _ = _run(host, bodies, pipeline=True)
    assert _texts(got) == _texts(want)
    assert [ends(s)[0] for s in got] == [ends(s)[0] for s in want]
    for sink in got:
        kinds = [type(ev).__name__ for ev in sink]
        assert kinds[-2:] == ["ChoiceEnd", "RequestEnd"] and "Delta" not in kinds[-2:]


def test_a_request_cancelled_in_the_pipeline_frees_its_slot_and_sends_no_more_text(
        host: Pair) -> None:
    model, ctx = host
    queue = AdmissionQueue(ctx.n_parallel, max_queue=16)
    steps = StepLoop(model, ctx, queue, pipeline=True)
    events: list[Event] = []
    req = model_request(model, "the cat and", events.append, max_tokens=40, logit_bias=NO_EOS)
    queue.submit(req)
    for r in queue.admit(steps.free_slots):
        steps.admit(r)
    for _ in range(5):
        steps.step()
    steps.end(req, None)
    steps.outbox.flush()
    sent = len(events)
    run_all(queue, steps)
    assert len(events) == sent and steps.free_slots == ctx.n_parallel and not steps.busy
