"""One request to a pool of upstreams, on a worker thread, delivered as engine events.

The call always streams from the upstream (asking for usage), and turns its chunks into the
events the local scheduler produces (:class:`Delta`, :class:`ChoiceEnd`,
:class:`RequestEnd`, :class:`RequestFailed`). The engine's own assemblers then build the
responses, so ids, usage, stop and finish_reason look the same for local and remote models.

Failover: until the first event reaches the caller, a replica that cannot be reached, times
out, answers 5xx or is at its concurrency limit is skipped and the next one is tried. After
that the answer has been seen, so a failure ends the request with :class:`UpstreamError`.
``cancel()`` closes the HTTP stream, which cancels the request upstream.
"""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from localloom.engine.events import (
    ChoiceEnd,
    Delta,
    Event,
    RequestEnd,
    RequestFailed,
    TokenLogprobData,
    ToolCallPiece,
)
from localloom.errors import (
    InvalidRequestError,
    LocalLoomError,
    ModelNotFoundError,
    ServerBusyError,
    UpstreamError,
    UpstreamTimeoutError,
)
from localloom.upstream.pool import Pool, Replica

__all__ = ["CallKind", "CallState", "RemoteCall"]

CallKind = Literal["chat", "completion"]
_PATHS = {"chat": "/chat/completions", "completion": "/completions"}
_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


class CallState(enum.Enum):
    """Where the call is: CONNECTING (may still fail over), STREAMING (events sent),
    then one of DONE, FAILED, CANCELLED."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Retry(Exception):
    """This replica failed before anything was sent: try the next one."""

    def __init__(self, error: LocalLoomError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Tally:
    """What the upstream has sent so far."""

    choices: dict[int, int] = field(default_factory=dict)  # index -> deltas seen
    ended: set[int] = field(default_factory=set)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


class RemoteCall:
    """A request on its way to an upstream. ``cancel`` is thread-safe and idempotent."""

    def __init__(self, pool: Pool, kind: CallKind, body: dict[str, Any], n: int,
                 sink: Callable[[Event], None],
                 on_end: Callable[[RemoteCall], None] | None = None) -> None:
        self.pool = pool
        self.kind = kind
        self.body = body
        self.n = n
        self.sink = sink
        self.state = CallState.CONNECTING
        self.replica: Replica | None = None  # the one that answered
        self._on_end = on_end  # told once the worker thread is done with the upstream
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name="localloom-upstream",
                                        daemon=True)

    def start(self) -> None:
        """Send the request (on a worker thread)."""
        self._thread.start()

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop: close the upstream stream; ``error`` (if any) goes to the sink."""
        with self._lock:
            if self.state in (CallState.DONE, CallState.FAILED, CallState.CANCELLED):
                return
            self.state = CallState.CANCELLED
            response = self._response
        if response is not None:
            response.close()  # the reading thread wakes with an error it then ignores
        if error is not None:
            self.sink(RequestFailed(error))

    # -- the worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._try_replicas()
        finally:
            if self._on_end is not None:
                self._on_end(self)

    def _try_replicas(self) -> None:
        tried: set[str] = set()
        last: LocalLoomError | None = None
        while self.state is CallState.CONNECTING:
            replica = self.pool.pick(tried)
            if replica is None:
                self._fail(last or self._all_open())
                return
            tried.add(replica.server.name)
            try:
                replica.server.enter()
            except ServerBusyError as exc:
                last = exc
                continue
            try:
                self._attempt(replica)
                return
            except _Retry as retry:
                last = retry.error
                if len(tried) < len(self.pool.replicas):
                    replica.server.stats.failovers += 1
            except LocalLoomError as exc:
                self._fail(exc)
                return
            except Exception as exc:  # a bug must not leave the caller waiting forever
                self._fail(UpstreamError(f"Upstream '{replica.server.name}': unexpected "
                                         f"failure {exc!r}."))
                return
            finally:
                replica.server.leave()

    def _all_open(self) -> LocalLoomError:
        wait = min((r.server.breaker.retry_after() for r in self.pool.replicas), default=1.0)
        return ServerBusyError(
            f"Every upstream serving '{self.pool.model}' ({', '.join(self.pool.names)}) is "
            f"failing (circuit open); retry in {wait:.0f} s.", retry_after=max(1.0, wait))

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._cancelled():
                return
            self.state = CallState.FAILED
        self.sink(RequestFailed(error))

    def _attempt(self, replica: Replica) -> None:
        server = replica.server
        body = {**self.body, "model": replica.remote_model}
        started = time.perf_counter()
        tally = _Tally()
        whole = not self.body.get("stream")
        config = server.config
        timeout = httpx.Timeout(config.answer_timeout if whole else config.read_timeout,
                                connect=config.connect_timeout)
        try:
            with server.client.stream("POST", _PATHS[self.kind], json=body,
                                      timeout=timeout) as response:
                with self._lock:
                    if self._cancelled():
                        return
                    self._response = response
                self._check_status(replica, response)
                if whole:
                    # not an object: no choices, so _finish reports the answer unfinished
                    data = _object(response.read(), "answer") or {}
                    self._take(replica, _whole(self.kind, data), tally, started)
                else:
                    for data in _sse_data(response.iter_lines()):
                        if self._cancelled():
                            return
                        self._take(replica, data, tally, started)
        except httpx.TimeoutException as exc:
            name = "answer_timeout" if whole else "read_timeout"
            self._transport_error(replica, "timeout", UpstreamTimeoutError(
                f"Upstream '{server.name}' ({config.url}) sent nothing for "
                f"{timeout.read:g} s ({name})"
                + ("; the answer was cut off." if self._streaming else
                   f". Raise {name} or check the server.")), exc)
        except httpx.HTTPError as exc:
            self._transport_error(replica, "connect" if isinstance(exc, httpx.ConnectError)
                                  else "stream", UpstreamError(
                f"Upstream '{server.name}' ({server.config.url}) "
                + ("cut the answer off mid-stream" if self._streaming else "is unreachable")
                + f" ({type(exc).__name__})"
                + ("; the text sent so far is partial." if self._streaming else
                   ". Check that it runs.")), exc)
        self._finish(replica, tally)

    def _cancelled(self) -> bool:
        # a method, not an inline check: another thread may change the state meanwhile
        return self.state is CallState.CANCELLED

    @property
    def _streaming(self) -> bool:
        return self.state is CallState.STREAMING

    def _transport_error(self, replica: Replica, kind: str, error: UpstreamError,
                         cause: Exception) -> None:
        if self._cancelled():
            return
        replica.server.count_error(kind)
        replica.server.breaker.failure()
        if self._streaming:
            raise error from cause
        raise _Retry(error) from cause

    def _check_status(self, replica: Replica, response: httpx.Response) -> None:
        status = response.status_code
        if status == 200:
            return
        server = replica.server
        text = _error_message(response.read())
        where = f"Upstream '{server.name}' ({server.config.url})"
        if status >= 500 or status == 429:
            server.count_error(f"status_{status}")
            if status in (429, 503):  # alive but full: no breaker failure
                retry = float(response.headers.get("Retry-After", "1") or 1)
                raise _Retry(ServerBusyError(f"{where} is busy (HTTP {status}): {text}",
                                             retry_after=retry))
            server.breaker.failure()
            raise _Retry(UpstreamError(f"{where} failed with HTTP {status}: {text}"))
        server.count_error(f"status_{status}")
        if status == 404:
            raise ModelNotFoundError(
                f"{where} does not serve model '{replica.remote_model}' (HTTP 404: {text}). "
                "Fix the upstream's models mapping or load the model there.")
        raise InvalidRequestError(f"{where} refused the request (HTTP {status}): {text}")

    def _take(self, replica: Replica, data: dict[str, Any], tally: _Tally,
              started: float) -> None:
        if data.get("error"):
            raise UpstreamError(f"Upstream '{replica.server.name}' reported an error: "
                                f"{_error_message(json.dumps(data).encode())}")
        usage = data.get("usage")
        if isinstance(usage, dict):
            tally.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            tally.completion_tokens = int(usage.get("completion_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            tally.cached_tokens = int(details.get("cached_tokens") or 0)
        for choice in data.get("choices") or []:
            index = int(choice.get("index", 0))
            delta = _delta(self.kind, index, choice)
            if delta.text or delta.logprobs or delta.tool_calls or delta.reasoning:
                self._emit(replica, delta, started)
                tally.choices[index] = tally.choices.get(index, 0) + 1
            finish = choice.get("finish_reason")
            if finish and index not in tally.ended:
                tally.ended.add(index)
                self._emit(replica, ChoiceEnd(index, _FINISH.get(finish, "stop"),
                                              tally.choices.get(index, 0)), started)

    def _emit(self, replica: Replica, event: Event, started: float) -> None:
        with self._lock:
            if self._cancelled():
                return
            first = self.state is CallState.CONNECTING
            self.state = CallState.STREAMING
            self.replica = replica
        if first:
            replica.server.breaker.success()
            replica.server.observe(first_byte_s=time.perf_counter() - started)
        self.sink(event)

    def _finish(self, replica: Replica, tally: _Tally) -> None:
        if self._cancelled():
            return
        if len(tally.ended) < self.n:  # no finish_reason for every choice: cut off
            error = UpstreamError(f"Upstream '{replica.server.name}' ended the answer without "
                                  "finishing it (the stream closed early).")
            replica.server.count_error("stream")
            replica.server.breaker.failure()
            if not self._streaming:
                raise _Retry(error)
            raise error
        replica.server.observe(prompt=tally.prompt_tokens, completion=tally.completion_tokens)
        with self._lock:
            if self._cancelled():
                return
            self.state = CallState.DONE
        self.sink(RequestEnd(tally.prompt_tokens, tally.completion_tokens,
                             tally.cached_tokens))


def _delta(kind: CallKind, index: int, choice: dict[str, Any]) -> Delta:
    """One upstream choice chunk as the engine's Delta: text, logprobs, tool-call pieces,
    reasoning."""
    if kind == "completion":
        return Delta(index, str(choice.get("text") or ""), _logprobs(choice.get("logprobs")))
    delta = choice.get("delta") or {}
    pieces = tuple(_tool_piece(i, c) for i, c in enumerate(delta.get("tool_calls") or [])
                   if isinstance(c, dict))
    # reasoning_content: llama-server's, LocalLoom's and older vLLM's name; reasoning: vLLM's
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    return Delta(index, str(delta.get("content") or ""), _logprobs(choice.get("logprobs")),
                 pieces or None, str(reasoning))


def _whole(kind: CallKind, data: dict[str, Any]) -> dict[str, Any]:
    """A whole (non-stream) answer in the shape of one stream chunk that holds it all: a chat
    choice's ``message`` becomes its ``delta`` (:func:`_tool_piece` numbers its tool calls
    by position)."""
    if kind == "completion" or data.get("error"):
        return data
    return {**data, "choices": [{**choice, "delta": choice.get("message") or {}}
                                for choice in data.get("choices") or []]}


def _object(payload: str | bytes, what: str) -> dict[str, Any] | None:
    """The JSON value of an event or a whole answer: its object, or None for another JSON
    value; UpstreamError when it is not JSON."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise UpstreamError(f"The upstream sent a malformed {what}: {payload[:120]!r}") \
            from exc
    return data if isinstance(data, dict) else None


def _tool_piece(position: int, call: dict[str, Any]) -> ToolCallPiece:
    function = call.get("function") or {}
    return ToolCallPiece(call_index=int(call.get("index", position)), id=call.get("id"),
                         name=function.get("name"), arguments=str(function.get("arguments") or ""))


def _logprobs(data: Any) -> tuple[TokenLogprobData, ...] | None:
    """An upstream's logprobs: the chat shape (``content``: token, logprob, bytes,
    top_logprobs; llama-server sends it for completions too) or the legacy completions
    shape (parallel ``tokens``/``token_logprobs``/``top_logprobs`` lists)."""
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("content"), list):
        return tuple(TokenLogprobData(
            token=_token_bytes(item), logprob=float(item.get("logprob", 0.0)),
            top=tuple((_token_bytes(t), float(t.get("logprob", 0.0)))
                      for t in item.get("top_logprobs") or []),
            text=str(item.get("token", ""))) for item in data["content"]) or None
    tokens = data.get("tokens") or []
    values = data.get("token_logprobs") or []
    tops = data.get("top_logprobs") or []
    return tuple(TokenLogprobData(
        token=str(token).encode(),
        logprob=float((values[i] if i < len(values) else None) or 0.0),
        top=tuple((str(t).encode(), float(v)) for t, v in (
            tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}).items()),
        text=str(token)) for i, token in enumerate(tokens)) or None


def _token_bytes(item: dict[str, Any]) -> bytes:
    raw = item.get("bytes")
    return bytes(raw) if isinstance(raw, list) else str(item.get("token", "")).encode()


def _sse_data(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of an SSE stream's ``data:`` lines; ``[DONE]`` ends it."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        data = _object(payload, "event")
        if data is not None:
            yield data


def _error_message(body: bytes) -> str:
    """The message of an OpenAI error body, else the text (short)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:300]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    return body.decode("utf-8", "replace")[:300]
