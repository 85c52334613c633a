"""What the scheduler tells a request's consumer: text deltas, choice and request ends.

Events are NamedTuples: one is made per token, and they are the cheapest immutable records.
The :class:`~localloom.engine.outbox.Outbox` carries them from the scheduler thread to the
request's sink.

Example::

    def sink(ev: Event) -> None:
        if isinstance(ev, Delta):
            print(ev.text, end="")
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ChoiceEnd", "Delta", "Event", "RequestEnd", "RequestFailed", "TokenLogprobData",
           "ToolCallPiece"]


class TokenLogprobData(NamedTuple):
    """Log probability of one sampled token and its most likely alternatives.

    ``text`` is what the token added to the answer, so the texts of a choice's tokens join
    to exactly its content ("" for a token inside a stop string, the end-of-generation token,
    leading whitespace a chat answer drops, the first bytes of a split character)."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...]
    text: str = ""


class ToolCallPiece(NamedTuple):
    """A piece of tool call number ``call_index`` of a choice, as an upstream streams it (local
    models' calls are read out of their text instead): the first piece of a call names it
    (``id``, ``name``), the following ones add to its ``arguments`` JSON text."""

    call_index: int
    id: str | None
    name: str | None
    arguments: str = ""


class Delta(NamedTuple):
    """New text of choice number ``choice``. From an upstream, which splits its output
    itself, also pieces of tool calls and of its reasoning (local models' are read out of
    ``text`` by the assembler)."""

    choice: int
    text: str
    logprobs: tuple[TokenLogprobData, ...] | None = None
    tool_calls: tuple[ToolCallPiece, ...] | None = None
    reasoning: str = ""


class ChoiceEnd(NamedTuple):
    """Choice number ``choice`` finished."""

    choice: int
    finish_reason: str
    completion_tokens: int


class RequestEnd(NamedTuple):
    """Every choice finished; the last event of a successful request."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


class RequestFailed(NamedTuple):
    """The request ended with an error (interrupted, model unloaded, decode failure)."""

    error: BaseException


Event = Delta | ChoiceEnd | RequestEnd | RequestFailed
