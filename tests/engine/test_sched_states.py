"""Requests and sequences move only along their legal transitions; anything else raises."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sched_helpers import plain_sampler, queued_request, tiny_context

from localloom.engine.detok import SeqText, TokenTexts
from localloom.engine.events import Event
from localloom.engine.outbox import Outbox
from localloom.engine.runtime import LlamaModel
from localloom.engine.task import RequestState, Seq, SeqState
from localloom.errors import EngineError, IllegalTransitionError

R, S = RequestState, SeqState
REQUEST_MOVES = {
    (R.NEW, R.WAITING), (R.NEW, R.CANCELLED),
    (R.WAITING, R.RUNNING), (R.WAITING, R.CANCELLED),
    (R.RUNNING, R.CANCELLING), (R.RUNNING, R.FINISHED), (R.RUNNING, R.CANCELLED),
    (R.CANCELLING, R.FINISHED), (R.CANCELLING, R.CANCELLED),
}
SEQ_MOVES = {
    (S.PREFILLING, S.GENERATING), (S.PREFILLING, S.CANCELLED),
    (S.GENERATING, S.FINISHED), (S.GENERATING, S.CANCELLED),
}


@pytest.fixture(scope="module")
def model(tiny_gguf: Path) -> Iterator[LlamaModel]:
    with tiny_context(tiny_gguf, n_parallel=1) as (loaded, _):
        yield loaded


@pytest.mark.parametrize(("old", "new"), list(itertools.product(R, R)))
def test_a_request_moves_only_along_its_legal_transitions(old: RequestState,
                                                         new: RequestState) -> None:
    events: list[Event] = []
    req = queued_request(events.append)
    req.state = old  # placed there directly: the move under test is the only one
    try:
        if (old, new) in REQUEST_MOVES:
            req.move(new)
            assert req.state is new
        else:
            with pytest.raises(IllegalTransitionError) as caught:
                req.move(new)
            assert req.state is old
            assert old.name in str(caught.value) and new.name in str(caught.value)
            assert "report" in str(caught.value)  # says what to do
            assert isinstance(caught.value, EngineError)
    finally:
        req.free_samplers()


@pytest.mark.parametrize(("old", "new"), list(itertools.product(S, S)))
def test_a_sequence_moves_only_along_its_legal_transitions(model: LlamaModel, old: SeqState,
                                                           new: SeqState) -> None:
    events: list[Event] = []
    req = queued_request(events.append)
    out = SeqText(TokenTexts(model), req.route, Outbox().post, index=0)
    seq = Seq(req, 0, 0, [], plain_sampler(), out)
    seq.state = old
    try:
        if (old, new) in SEQ_MOVES:
            seq.move(new)
            assert seq.state is new
        else:
            with pytest.raises(IllegalTransitionError, match="sequence"):
                seq.move(new)
            assert seq.state is old
    finally:
        seq.free_sampler()
        req.free_samplers()


def test_ended_states_are_final_and_only_they_are_ended() -> None:
    for state in R:
        assert state.ended == (not any(old is state for old, _ in REQUEST_MOVES))
    for seq_state in S:
        assert seq_state.live == any(old is seq_state for old, _ in SEQ_MOVES)


def test_only_waiting_and_running_requests_hold_queue_capacity() -> None:
    assert {s for s in R if s.holds_capacity} == {R.WAITING, R.RUNNING}


def test_a_new_request_starts_new_and_a_new_sequence_prefilling(model: LlamaModel) -> None:
    events: list[Event] = []
    req = queued_request(events.append)
    out = SeqText(TokenTexts(model), req.route, Outbox().post, index=0)
    seq = Seq(req, 0, 0, [], plain_sampler(), out)
    assert (req.state, seq.state) == (R.NEW, S.PREFILLING)
    seq.free_sampler()
    assert seq.sampler is None
    seq.free_sampler()  # freeing twice is harmless
    req.free_samplers()
    assert req.samplers == []
