"""Turn scheduler events into OpenAI-shaped responses and stream chunks.

Used by the sync and the async engine alike: ``chunks(event)`` for streams,
``add(event)`` then ``result()`` for whole responses.
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata

from localloom.engine.events import (
    ChoiceEnd,
    Delta,
    Event,
    RequestEnd,
    TokenLogprobData,
    ToolCallPiece,
)
from localloom.engine.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    FinishReason,
    PromptTokensDetails,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from localloom.engine.tools.output import Content, OutputSpec, OutputSplitter, Piece, Reasoning
from localloom.engine.tools.parsers import ParsedCall
from localloom.engine.tools.protocol import (
    DeltaFunctionCall,
    DeltaToolCall,
    FunctionCall,
    ToolCall,
)

__all__ = ["ChatAssembler", "CompletionAssembler", "ResponseMeta", "system_fingerprint"]


@functools.cache
def system_fingerprint() -> str:
    """OpenAI's ``system_fingerprint``: what the same seed's answer depends on besides the
    model, i.e. LocalLoom's version, llama.cpp's (llama-cpp-python's pinned) version and a
    hash of the llama.cpp build, CPU flags and devices.

    Example: ``"localloom-0.1.0_llama.cpp-0.3.36_3f2a9c1e"``
    """
    from localloom._version import __version__
    from localloom.engine.backend import machine_fingerprint

    try:
        llama = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:  # a source checkout of llama-cpp-python
        import llama_cpp

        llama = str(llama_cpp.__version__)
    return f"localloom-{__version__}_llama.cpp-{llama}_{machine_fingerprint()[:8]}"


@dataclass(frozen=True)
class ResponseMeta:
    """What every response/chunk of one request shares."""

    id: str
    created: int
    model: str
    n: int
    include_usage: bool = False
    fingerprint: str | None = None

    @classmethod
    def new(cls, prefix: str, model: str, n: int, include_usage: bool = False) -> ResponseMeta:
        """Fresh id and timestamp."""
        return cls(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), model, n, include_usage,
                   system_fingerprint())


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


def _chat_logprobs(items: tuple[TokenLogprobData, ...]) -> list[TokenLogprob]:
    # ``token`` is the text the token added, so the tokens join to exactly the content;
    # ``bytes`` are the model's own bytes for it (a split character's part, a leading space).
    return [
        TokenLogprob(
            token=d.text, bytes=list(d.token), logprob=d.logprob,
            top_logprobs=[TopLogprob(token=_text(t), bytes=list(t), logprob=lp)
                          for t, lp in d.top],
        )
        for d in items
    ]


def _usage(end: RequestEnd) -> Usage:
    return Usage(prompt_tokens=end.prompt_tokens, completion_tokens=end.completion_tokens,
                 total_tokens=end.prompt_tokens + end.completion_tokens,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=end.cached_tokens))


def _reason(value: str) -> FinishReason:
    return "length" if value == "length" else "stop"


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _argument_pieces(arguments: str) -> list[str]:
    # Streamed arguments come in pieces, as OpenAI sends them: here cut after each ',' or
    # ':' of the JSON text (the call is known whole once its syntax closes).
    pieces = [p for p in re.split(r"(?<=[,:])", arguments) if p]
    return pieces or [""]


@dataclass
class _Split:
    """What a choice's output split into (whole responses)."""

    reasoning: str = ""
    content: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    streamed: dict[int, ToolCall] = field(default_factory=dict)  # an upstream's, by index

    def take_piece(self, piece: ToolCallPiece) -> None:
        """Add an upstream's piece of a call: a named piece starts the call."""
        call = self.streamed.get(piece.call_index)
        if call is None or piece.name is not None:
            call = ToolCall(id=piece.id or _call_id(), function=FunctionCall(
                name=piece.name or "", arguments=""))
            self.streamed[piece.call_index] = call
            self.calls.append(call)
        call.function.arguments += piece.arguments

    def message(self) -> AssistantMessage:
        return AssistantMessage(
            content=self.content if self.content or not self.calls else None,
            reasoning_content=self.reasoning or None, tool_calls=self.calls or None)


class ChatAssembler:
    """Builds ``chat.completion`` objects and ``chat.completion.chunk`` streams; each
    choice's text goes through an :class:`OutputSplitter` into reasoning, text and calls."""

    def __init__(self, meta: ResponseMeta, logprobs: bool = False,
                 output: OutputSpec | None = None) -> None:
        self.meta = meta
        self.logprobs = logprobs
        spec = output or OutputSpec()
        self.splitters = [OutputSplitter(spec) for _ in range(meta.n)]
        self.splits = [_Split() for _ in range(meta.n)]
        self.finish: list[FinishReason] = ["stop"] * meta.n
        self.lps: list[list[TokenLogprob]] = [[] for _ in range(meta.n)]
        self.usage: Usage | None = None
        self._started = [False] * meta.n
        self._calls_sent = [0] * meta.n
        self._streamed_calls = [False] * meta.n  # an upstream sent tool calls

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        m = self.meta
        return ChatCompletionChunk(id=m.id, created=m.created, model=m.model, choices=choices,
                                   usage=usage, system_fingerprint=m.fingerprint)

    def _delta(self, index: int, delta: ChunkDelta, logprobs: ChoiceLogprobs | None = None,
               finish: FinishReason | None = None) -> ChatCompletionChunk:
        return self._chunk([ChunkChoice(index=index, delta=delta, logprobs=logprobs,
                                        finish_reason=finish)])

    def _piece_chunks(self, index: int, pieces: list[Piece],
                      lp: ChoiceLogprobs | None = None) -> list[ChatCompletionChunk]:
        out: list[ChatCompletionChunk] = []
        for piece in pieces:
            if isinstance(piece, Reasoning):
                out.append(self._delta(index, ChunkDelta(reasoning_content=piece.text)))
            elif isinstance(piece, Content):
                out.append(self._delta(index, ChunkDelta(content=piece.text), lp))
                lp = None
            else:
                out += self._call_chunks(index, piece)
        if lp is not None:  # the text these tokens wrote is held back or not content
            out.append(self._delta(index, ChunkDelta(content=""), lp))
        return out

    def _call_chunks(self, index: int, call: ParsedCall) -> list[ChatCompletionChunk]:
        number = self._calls_sent[index]
        self._calls_sent[index] += 1
        first = DeltaToolCall(index=number, id=_call_id(), type="function",
                              function=DeltaFunctionCall(name=call.name, arguments=""))
        out = [self._delta(index, ChunkDelta(tool_calls=[first]))]
        for piece in _argument_pieces(call.arguments_json):
            more = DeltaToolCall(index=number, function=DeltaFunctionCall(arguments=piece))
            out.append(self._delta(index, ChunkDelta(tool_calls=[more])))
        return out

    def _streamed_call_chunks(self, index: int, pieces: tuple[ToolCallPiece, ...]
                              ) -> list[ChatCompletionChunk]:
        # An upstream's call pieces pass through as they came: its first piece of a call
        # names it, the next ones carry arguments.
        self._streamed_calls[index] = True
        calls = [DeltaToolCall(index=p.call_index,
                               function=DeltaFunctionCall(arguments=p.arguments))
                 if p.name is None else
                 DeltaToolCall(index=p.call_index, id=p.id or _call_id(), type="function",
                               function=DeltaFunctionCall(name=p.name, arguments=p.arguments))
                 for p in pieces]
        return [self._delta(index, ChunkDelta(tool_calls=calls))]

    def _finish(self, index: int, reason: str) -> FinishReason:
        finish = _reason(reason)
        if finish == "stop" and (self.splitters[index].calls_found
                                 or self._streamed_calls[index] or reason == "tool_calls"):
            return "tool_calls"
        return finish

    def chunks(self, ev: Event) -> list[ChatCompletionChunk]:
        """The stream chunks one event produces (possibly none)."""
        out: list[ChatCompletionChunk] = []
        if isinstance(ev, Delta | ChoiceEnd) and not self._started[ev.choice]:
            self._started[ev.choice] = True
            out.append(self._delta(ev.choice, ChunkDelta(role="assistant", content="")))
        if isinstance(ev, Delta):
            lp = ChoiceLogprobs(content=_chat_logprobs(ev.logprobs)) if ev.logprobs else None
            if ev.reasoning:
                out.append(self._delta(ev.choice, ChunkDelta(reasoning_content=ev.reasoning)))
            out += self._piece_chunks(ev.choice, self.splitters[ev.choice].feed(ev.text), lp)
            if ev.tool_calls:
                out += self._streamed_call_chunks(ev.choice, ev.tool_calls)
        elif isinstance(ev, ChoiceEnd):
            out += self._piece_chunks(ev.choice, self.splitters[ev.choice].finish())
            out.append(self._delta(ev.choice, ChunkDelta(),
                                   finish=self._finish(ev.choice, ev.finish_reason)))
        elif isinstance(ev, RequestEnd) and self.meta.include_usage:
            out.append(self._chunk([], usage=_usage(ev)))
        return out

    def _take(self, index: int, pieces: list[Piece]) -> None:
        split = self.splits[index]
        for piece in pieces:
            if isinstance(piece, Reasoning):
                split.reasoning += piece.text
            elif isinstance(piece, Content):
                split.content += piece.text
            else:
                split.calls.append(ToolCall(id=_call_id(), function=FunctionCall(
                    name=piece.name, arguments=piece.arguments_json)))

    def add(self, ev: Event) -> None:
        """Accumulate one event for :meth:`result`."""
        if isinstance(ev, Delta):
            self.splits[ev.choice].reasoning += ev.reasoning
            self._take(ev.choice, self.splitters[ev.choice].feed(ev.text))
            if ev.logprobs:
                self.lps[ev.choice].extend(_chat_logprobs(ev.logprobs))
            for piece in ev.tool_calls or ():
                self._streamed_calls[ev.choice] = True
                self.splits[ev.choice].take_piece(piece)
        elif isinstance(ev, ChoiceEnd):
            self._take(ev.choice, self.splitters[ev.choice].finish())
            self.finish[ev.choice] = self._finish(ev.choice, ev.finish_reason)
        elif isinstance(ev, RequestEnd):
            self.usage = _usage(ev)

    def result(self) -> ChatCompletion:
        """The whole response."""
        m = self.meta
        choices = [
            ChatChoice(index=i, message=self.splits[i].message(),
                       finish_reason=self.finish[i],
                       logprobs=ChoiceLogprobs(content=self.lps[i]) if self.logprobs else None)
            for i in range(m.n)
        ]
        return ChatCompletion(id=m.id, created=m.created, model=m.model, choices=choices,
                              usage=self.usage, system_fingerprint=m.fingerprint)


class CompletionAssembler:
    """Builds ``text_completion`` objects, whole or streamed (same shape)."""

    def __init__(self, meta: ResponseMeta, logprobs: bool = False) -> None:
        self.meta = meta
        self.logprobs = logprobs
        self.texts = [""] * meta.n
        self.finish: list[FinishReason] = ["stop"] * meta.n
        self.lps = [CompletionLogprobs() for _ in range(meta.n)]
        self._offsets = [0] * meta.n
        self.usage: Usage | None = None

    def _legacy(self, index: int, items: tuple[TokenLogprobData, ...] | None,
                into: CompletionLogprobs) -> CompletionLogprobs:
        for d in items or ():
            token = d.text  # what it added to the text: the tokens join to exactly it
            into.tokens.append(token)
            into.token_logprobs.append(d.logprob)
            into.top_logprobs.append({_text(t): lp for t, lp in d.top})
            into.text_offset.append(self._offsets[index])
            self._offsets[index] += len(token)
        return into

    def _one(self, choice: CompletionChoice, usage: Usage | None = None) -> Completion:
        m = self.meta
        return Completion(id=m.id, created=m.created, model=m.model,
                          choices=[choice] if choice.index >= 0 else [], usage=usage,
                          system_fingerprint=m.fingerprint)

    def chunks(self, ev: Event) -> list[Completion]:
        """The stream pieces one event produces (possibly none)."""
        if isinstance(ev, Delta):
            lp = self._legacy(ev.choice, ev.logprobs, CompletionLogprobs()) if self.logprobs \
                else None
            if not ev.text and lp is None:
                return []
            return [self._one(CompletionChoice(index=ev.choice, text=ev.text, logprobs=lp))]
        if isinstance(ev, ChoiceEnd):
            return [self._one(CompletionChoice(index=ev.choice, text="",
                                               finish_reason=_reason(ev.finish_reason)))]
        if isinstance(ev, RequestEnd) and self.meta.include_usage:
            return [self._one(CompletionChoice(index=-1, text=""), usage=_usage(ev))]
        return []

    def add(self, ev: Event) -> None:
        """Accumulate one event for :meth:`result`."""
        if isinstance(ev, Delta):
            self.texts[ev.choice] += ev.text
            if self.logprobs:
                self._legacy(ev.choice, ev.logprobs, self.lps[ev.choice])
        elif isinstance(ev, ChoiceEnd):
            self.finish[ev.choice] = _reason(ev.finish_reason)
        elif isinstance(ev, RequestEnd):
            self.usage = _usage(ev)

    def result(self) -> Completion:
        """The whole response."""
        m = self.meta
        choices = [
            CompletionChoice(index=i, text=self.texts[i], finish_reason=self.finish[i],
                             logprobs=self.lps[i] if self.logprobs else None)
            for i in range(m.n)
        ]
        return Completion(id=m.id, created=m.created, model=m.model, choices=choices,
                          usage=self.usage, system_fingerprint=m.fingerprint)
