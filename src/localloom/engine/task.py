"""A request and its sequences, each with one state field and its legal transitions.

Like llama.cpp's server (``slot_state``), every object the scheduler tracks says where it
is in one field; moving it anywhere it cannot go raises :class:`IllegalTransitionError`.

Request (changed under the admission queue's lock, from any thread)::

    NEW ──submit──> WAITING ──admit──> RUNNING ──every choice ended──> FINISHED
     │                 │                  │  └──cancel──> CANCELLING ──┬──> CANCELLED
     └─refused─────────┴──cancel──────────┴──failed────────────────────┘  (or FINISHED,
                                                                   when it ended first)

Sequence, one per choice (changed on the scheduler thread only)::

    PREFILLING ──prompt decoded──> GENERATING ──EOG, stop, max_tokens──> FINISHED
        └──────────────┴──request cancelled or failed──> CANCELLED

Example::

    req = GenerationRequest(prompt, params, samplers, 64, (), sink)
    req.state            # RequestState.NEW
    req.move(RequestState.FINISHED)  # IllegalTransitionError: NEW cannot finish
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

import numpy as np

from localloom.engine.detok import SeqText
from localloom.engine.lookup import LookupGuard, NgramIndex
from localloom.engine.outbox import Route, Sink
from localloom.engine.params import SamplingParams
from localloom.engine.runtime import SeqSampler, free_sampler
from localloom.errors import IllegalTransitionError

__all__ = ["GenerationRequest", "RequestState", "Seq", "SeqState"]


class RequestState(Enum):
    """Where a request is; see the module docstring for the transitions."""

    NEW = "new"  # built, not submitted yet
    WAITING = "waiting"  # in the admission queue
    RUNNING = "running"  # holds slots: prefilling or generating
    CANCELLING = "cancelling"  # cancel asked; the scheduler thread frees its slots next
    FINISHED = "finished"  # every choice ended; RequestEnd sent
    CANCELLED = "cancelled"  # refused, cancelled or failed; its slots are free

    @property
    def holds_capacity(self) -> bool:
        """Whether its sequences count against the queue's capacity (a cancelled request
        gives its share back at once, before the scheduler thread frees the slots)."""
        return self in (RequestState.WAITING, RequestState.RUNNING)

    @property
    def ended(self) -> bool:
        """FINISHED or CANCELLED: nothing more happens to it."""
        return self in (RequestState.FINISHED, RequestState.CANCELLED)


class SeqState(Enum):
    """Where one choice is; see the module docstring for the transitions."""

    PREFILLING = "prefilling"  # its prompt is being decoded (choice 0's slot; others copy)
    GENERATING = "generating"  # sampling a token per step
    FINISHED = "finished"  # ended by EOG, a stop string or max_tokens; ChoiceEnd sent
    CANCELLED = "cancelled"  # its request was cancelled or failed

    @property
    def live(self) -> bool:
        """Whether it still holds its slot and sampler."""
        return self in (SeqState.PREFILLING, SeqState.GENERATING)


_R = RequestState
_REQUEST_MOVES: Mapping[RequestState, frozenset[RequestState]] = MappingProxyType({
    _R.NEW: frozenset({_R.WAITING, _R.CANCELLED}),
    _R.WAITING: frozenset({_R.RUNNING, _R.CANCELLED}),
    _R.RUNNING: frozenset({_R.CANCELLING, _R.FINISHED, _R.CANCELLED}),
    # A request may end in the step that races with its cancel: it finished first.
    _R.CANCELLING: frozenset({_R.FINISHED, _R.CANCELLED}),
    _R.FINISHED: frozenset(),
    _R.CANCELLED: frozenset(),
})
_S = SeqState
_SEQ_MOVES: Mapping[SeqState, frozenset[SeqState]] = MappingProxyType({
    _S.PREFILLING: frozenset({_S.GENERATING, _S.CANCELLED}),
    _S.GENERATING: frozenset({_S.FINISHED, _S.CANCELLED}),
    _S.FINISHED: frozenset(),
    _S.CANCELLED: frozenset(),
})


class GenerationRequest:
    """One request as the scheduler sees it: tokens, samplers (one per choice), a sink."""

    def __init__(self, prompt: list[int], params: SamplingParams, samplers: list[SeqSampler],
                 max_tokens: int, stops: tuple[str, ...], sink: Sink, *,
                 lstrip: bool = False, lookup: bool = False,
                 deterministic: bool = False) -> None:
        self.prompt = prompt
        self.params = params
        self.samplers = samplers  # handed to its sequences at admission
        self.n = len(samplers)
        self.max_tokens = max_tokens
        self.stops = stops
        self.sink = sink
        self.route = Route.of(sink)
        self.lstrip = lstrip
        # Reproducibility: a cached prefix, or guesses verified in a batch, give logits a
        # little different from a cold prefill and one-token steps, and a near tie flips.
        # Seeded requests therefore prefill from an empty slot (the same text every time
        # when they run one at a time); deterministic ones also run alone in their steps
        # (the same text whatever else is in flight) and never guess ahead.
        self.seeded = params.seed is not None
        self.deterministic = deterministic
        self.reuse_prefix = not (self.seeded or deterministic)
        # prompt lookup: one stream only
        self.lookup = lookup and len(samplers) == 1 and not deterministic
        # Plain greedy decoding skips the C chain: it copies all logits into a candidate
        # array per token (0.4 ms with a 262k vocabulary), numpy's argmax reads them (40 us).
        self.argmax = params.greedy and not params.has_penalties and params.grammar is None
        self.bias_ids = np.array([t for t, _ in params.logit_bias], dtype=np.int64)
        self.bias_vals = np.array([b for _, b in params.logit_bias], dtype=np.float32)
        self.state = RequestState.NEW
        self.seqs: list[Seq] = []  # one per choice, made at admission
        self.cached_tokens = 0
        self.completion_tokens = 0
        self.t_submit = time.perf_counter()
        self.t_admit = 0.0
        self.t_first = 0.0

    def move(self, state: RequestState) -> None:
        """Change state; the caller holds the admission queue's lock."""
        if state not in _REQUEST_MOVES[self.state]:
            raise IllegalTransitionError("request", self.state.name, state.name)
        self.state = state

    def free_samplers(self) -> None:
        """Free the samplers no sequence has taken (a request that never ran)."""
        for sampler in self.samplers:
            free_sampler(sampler)
        self.samplers = []


class Seq:
    """One choice being decoded in one slot (one KV stream).

    ``tokens`` is the slot's own list of what its KV cache holds (:class:`Slots` keeps it
    in place), so the position of the next token is ``len(tokens)``: one fact, one place."""

    __slots__ = ("defer", "guard", "index", "n_gen", "next_token", "ngrams", "on_device", "out",
                 "req", "sampler", "slot", "state", "tokens")

    def __init__(self, req: GenerationRequest, index: int, slot: int, tokens: list[int],
                 sampler: SeqSampler, out: SeqText) -> None:
        self.req = req
        self.index = index
        self.slot = slot
        self.tokens = tokens
        self.sampler: SeqSampler | None = sampler
        self.out = out
        self.state = SeqState.PREFILLING
        self.next_token = -1
        self.n_gen = 0
        self.ngrams: NgramIndex | None = None  # set when prompt lookup may guess ahead
        self.guard: LookupGuard | None = None
        self.on_device = False  # its greedy picks are made in the model's graph (ondevice.py)
        # Its text work may wait for the next decode's launch (StepLoop's pipeline): only
        # an end-of-generation token or max_tokens can end it, both known without the text.
        self.defer = False

    def move(self, state: SeqState) -> None:
        """Change state (scheduler thread only)."""
        if state not in _SEQ_MOVES[self.state]:
            raise IllegalTransitionError("sequence", self.state.name, state.name)
        self.state = state

    def free_sampler(self) -> None:
        """Free the sampler (once)."""
        free_sampler(self.sampler)
        self.sampler = None
