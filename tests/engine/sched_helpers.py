"""Helpers for the scheduler-part tests: real requests, samplers and contexts, no Engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import llama_cpp

from localloom.engine.admission import AdmissionQueue
from localloom.engine.events import ChoiceEnd, Delta, Event, RequestEnd
from localloom.engine.outbox import Sink
from localloom.engine.protocol import CompletionRequest
from localloom.engine.runtime import (
    LlamaContext,
    LlamaModel,
    LoadOptions,
    LogControl,
    SeqSampler,
    build_sampler,
)
from localloom.engine.steploop import StepLoop
from localloom.engine.task import GenerationRequest

# The tiny model's vocabulary: 3 special tokens, then one token per byte value.
BYTE_BASE = 3
EOS = 2


def byte_tokens(text: str) -> list[int]:
    """Token ids that spell ``text`` byte by byte in the tiny vocabulary."""
    return [BYTE_BASE + b for b in text.encode("utf-8")]


def plain_sampler() -> SeqSampler:
    """A real C sampler chain that needs no model (for queue tests, which never sample)."""
    params = llama_cpp.llama_sampler_chain_default_params()
    return SeqSampler(llama_cpp.llama_sampler_chain_init(params))


def queued_request(sink: Sink, n: int = 1, prompt: list[int] | None = None
                   ) -> GenerationRequest:
    """A request of ``n`` choices with model-free samplers."""
    params = CompletionRequest.parse({"prompt": "x", "n": n}).to_sampling_params()
    return GenerationRequest(prompt or [1, 5, 6], params, [plain_sampler() for _ in range(n)],
                             8, (), sink)


@contextmanager
def tiny_context(path: Path, n_parallel: int = 4, n_ctx: int = 256,
                 device_sampling: bool = False) -> Iterator[tuple[LlamaModel, LlamaContext]]:
    """The tiny model and a context of ``n_parallel`` sequences, llama.cpp's log muted;
    ``device_sampling``: plain greedy picks made in the model's graph (engine/ondevice.py),
    which runs on the CPU here."""
    log = LogControl()
    log.install()
    options = LoadOptions(n_gpu_layers=0, use_mmap=True, n_threads=1, flash_attn=-1,
                          n_ctx=n_ctx, max_default_ctx=n_ctx, n_parallel=n_parallel,
                          device_sampling=device_sampling)
    model = LlamaModel(path, options)
    ctx = LlamaContext(model, options)
    try:
        yield model, ctx
    finally:
        ctx.close()
        model.close()
        log.release()


def model_request(model: LlamaModel, prompt: str, sink: Sink, *, seed: int = 0,
                  stops: tuple[str, ...] = (), deterministic: bool = False,
                  **fields: Any) -> GenerationRequest:
    """A completion request as the runner builds it (parsed, one sampler per choice)."""
    body = {"prompt": prompt, "max_tokens": 16, "temperature": 0, **fields}
    params = CompletionRequest.parse(body).to_sampling_params()
    tokens = model.tokenize(prompt)
    samplers = [build_sampler(model, params, seed + i) for i in range(params.n)]
    assert params.max_tokens is not None
    return GenerationRequest(tokens, params, samplers, params.max_tokens,
                             stops or params.stop, sink, lookup=params.prompt_lookup,
                             deterministic=deterministic)


def run_all(queue: AdmissionQueue, steps: StepLoop, max_steps: int = 10_000) -> int:
    """Admit and step (as the scheduler thread does) until nothing runs or waits; returns
    the steps taken. Events are delivered at the end."""
    taken = 0
    while True:
        for req, error in queue.take_cancels():
            steps.end(req, error)
        for req in queue.admit(steps.free_slots):
            steps.admit(req)
        if not steps.busy:
            break
        steps.step()
        taken += 1
        assert taken < max_steps
    steps.outbox.flush()
    return taken


def texts(events: list[Event], n: int = 1) -> list[str]:
    """Each choice's text, from its deltas."""
    out = [""] * n
    for ev in events:
        if isinstance(ev, Delta):
            out[ev.choice] += ev.text
    return out


def ends(events: list[Event]) -> tuple[list[ChoiceEnd], list[RequestEnd]]:
    """The choice ends and request ends among ``events``."""
    return ([ev for ev in events if isinstance(ev, ChoiceEnd)],
            [ev for ev in events if isinstance(ev, RequestEnd)])
