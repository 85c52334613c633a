"""Split what a model writes into reasoning, answer text and tool calls, as it streams.

The scheduler produces one text per choice; an :class:`OutputSplitter` reads it piece by
piece and hands back what is known so far: reasoning (between the template's thinking
markers, ``<think>``/``</think>`` by default, only at the start of an answer), answer text,
and the calls the model's :class:`ToolCallParser` reads out of the rest. Text that may be
the start of a marker waits until the next piece decides; once a call begins, the rest of
the answer waits until the parser can read whole calls out of it (at each closing tag for
syntaxes that have one, else at the end). Streams and whole responses
use the same splitter, so both give the same message.

Example::

    splitter = OutputSplitter(OutputSpec(reasoning=THINK))
    pieces = splitter.feed("<think>hm</think>Hi") + splitter.finish()
    # [Reasoning("hm"), Content("Hi")]
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from localloom.engine.detok import hold_back
from localloom.engine.tools.parsers import ParsedCall, ToolCallParser

__all__ = [
    "REASONING_MARKERS",
    "THINK",
    "Content",
    "OutputSpec",
    "OutputSplitter",
    "Reasoning",
    "ReasoningMarkers",
    "reasoning_markers_for",
]


@dataclass(frozen=True)
class ReasoningMarkers:
    """The text a model's thinking starts and ends with."""

    start: str
    end: str


THINK = ReasoningMarkers("<think>", "</think>")
# Known pairs; a template that writes one of these starts uses its pair (else <think>).
REASONING_MARKERS = (
    THINK,
    ReasoningMarkers("<|START_THINKING|>", "<|END_THINKING|>"),  # Command R7B / A
    ReasoningMarkers("[THINK]", "[/THINK]"),  # Magistral
    ReasoningMarkers("<seed:think>", "</seed:think>"),  # Seed-OSS
)


def reasoning_markers_for(template: str | None) -> ReasoningMarkers:
    """The thinking markers a chat template uses (``<think>`` when it shows none)."""
    for markers in REASONING_MARKERS[1:]:
        if template and markers.start in template:
            return markers
    return THINK


@dataclass(frozen=True)
class OutputSpec:
    """How to read one request's output: thinking markers (and whether the prompt already
    opened them), the tool-call parser when tools were offered, and the offered names."""

    reasoning: ReasoningMarkers | None = THINK
    in_reasoning: bool = False
    parser: ToolCallParser | None = None
    tool_names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Reasoning:
    """A piece of the model's thinking."""

    text: str


@dataclass(frozen=True)
class Content:
    """A piece of the answer."""

    text: str


Piece = Reasoning | Content | ParsedCall


class _State(enum.Enum):
    START = "start"  # nothing decided yet: thinking may open here
    REASONING = "reasoning"  # inside the thinking markers
    ANSWER_START = "answer_start"  # the answer's first text: a call may lead it
    ANSWER = "answer"  # answer text; a marker switches to CALLS
    CALLS = "calls"  # a call began: the rest is parsed at the end


@dataclass
class OutputSplitter:
    """One choice's output, split as it arrives (see the module docstring)."""

    spec: OutputSpec
    state: _State = _State.START
    pending: str = ""
    _calls_seen: bool = field(default=False, repr=False)
    _after_reasoning: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.spec.in_reasoning and self.spec.reasoning is not None:
            self.state = _State.REASONING
        elif self.spec.reasoning is None:
            self.state = _State.ANSWER_START

    def feed(self, text: str) -> list[Piece]:
        """What ``text`` (the next piece of output) makes known."""
        self.pending += text
        out: list[Piece] = []
        while True:
            before = (self.state, len(self.pending))
            self._step(out, final=False)
            if (self.state, len(self.pending)) == before:
                return out

    def finish(self) -> list[Piece]:
        """Everything still held, at the end of the output."""
        out: list[Piece] = []
        while self.pending or self.state is _State.CALLS:
            before = (self.state, len(self.pending))
            self._step(out, final=True)
            if self.state is _State.CALLS:
                self._parse_calls(out)
            if (self.state, len(self.pending)) == before:
                break
        return out

    @property
    def calls_found(self) -> bool:
        """Whether any tool call was read (the finish reason becomes "tool_calls")."""
        return self._calls_seen

    # -- states --------------------------------------------------------------------------

    def _step(self, out: list[Piece], *, final: bool) -> None:
        if self.state is _State.START:
            self._start(final)
        elif self.state is _State.REASONING:
            self._reasoning(out, final)
        elif self.state is _State.ANSWER_START:
            self._answer_start(final)
        elif self.state is _State.ANSWER:
            self._answer(out, final)
        elif self.state is _State.CALLS and not final:
            self._finished_calls(out)

    def _finished_calls(self, out: list[Piece]) -> None:
        assert self.spec.parser is not None
        upto = self.spec.parser.complete_upto(self.pending)
        if upto:
            rest = self.pending[upto:]
            self.pending = self.pending[:upto]
            self._parse_calls(out)
            self.pending = rest
    def _start(self, final: bool) -> None:
        assert self.spec.reasoning is not None
        start = self.spec.reasoning.start
        head = self.pending.lstrip()
        if head.startswith(start):
            self.pending = head[len(start):]
            self.state = _State.REASONING
        elif final or not start.startswith(head):
            self.state = _State.ANSWER_START

    def _reasoning(self, out: list[Piece], final: bool) -> None:
        assert self.spec.reasoning is not None
        end = self.spec.reasoning.end
        at = self.pending.find(end)
        if at >= 0:
            if at:
                out.append(Reasoning(self.pending[:at]))
            self.pending = self.pending[at + len(end):]
            self.state = _State.ANSWER_START
            self._after_reasoning = True
            return
        keep = 0 if final else hold_back(self.pending, (end,))
        if len(self.pending) > keep:
            out.append(Reasoning(self.pending[:len(self.pending) - keep]))
            self.pending = self.pending[len(self.pending) - keep:]

    def _answer_start(self, final: bool) -> None:
        parser = self.spec.parser
        if self._after_reasoning:  # the blank lines after </think> are not the answer's
            self.pending = self.pending.lstrip()
            if not self.pending and not final:
                return
        head = self.pending.lstrip()
        if parser is None or not parser.leading:
            self.state = _State.ANSWER
        elif any(head.startswith(lead) for lead in parser.leading):
            self.state = _State.CALLS
        elif final or (head and not any(lead.startswith(head) for lead in parser.leading)):
            self.state = _State.ANSWER

    def _answer(self, out: list[Piece], final: bool) -> None:
        parser = self.spec.parser
        markers = parser.markers if parser is not None else ()
        found = [i for i in (self.pending.find(m) for m in markers) if i >= 0]
        # Between and after calls, blank lines are the syntax's, not the answer's.
        blank_after_call = self._calls_seen and not self.pending[:min(found, default=None)].strip()
        if found:
            at = min(found)
            if at and not blank_after_call:
                out.append(Content(self.pending[:at]))
            self.pending = self.pending[at:]
            self.state = _State.CALLS
            return
        if blank_after_call:
            self.pending = "" if final else self.pending
            return
        keep = 0 if final else hold_back(self.pending, markers)
        if len(self.pending) > keep:
            out.append(Content(self.pending[:len(self.pending) - keep]))
            self.pending = self.pending[len(self.pending) - keep:]

    def _parse_calls(self, out: list[Piece]) -> None:
        assert self.spec.parser is not None
        text, self.pending = self.pending, ""
        self.state = _State.ANSWER
        content, calls = self.spec.parser.parse(text)
        known = [c for c in calls if c.name in self.spec.tool_names]
        if not known:  # not a call after all, or only of functions nobody offered
            out.append(Content(text))
            return
        if content:
            out.append(Content(content))
        out.extend(known)
        self._calls_seen = True
