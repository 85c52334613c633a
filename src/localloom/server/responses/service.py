"""``POST /v1/responses`` on the engine's chat path: build messages (with a stored
conversation for ``previous_response_id``), run, answer as a Response object or as the
typed events OpenAI's SDK parses (``response.created`` ... ``response.completed``).

Example::

    service = ResponsesService(engine=engine, models=manager, metrics=metrics, drain=drain)
    response = await service.create(request)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.responses import JSONResponse, Response

from localloom.engine.protocol import ChatCompletionRequest
from localloom.engine.streams import AsyncStream
from localloom.errors import LocalLoomError
from localloom.server.errors import reply_for
from localloom.server.responses.protocol import ResponseRequest
from localloom.server.responses.store import ResponseStore, StoredResponse
from localloom.server.sse import (
    CLIENT_CLOSED,
    END,
    EventStreamResponse,
    aclose_stream,
    next_chunk,
    sse_event,
    until_disconnected,
)

if TYPE_CHECKING:
    from localloom.engine import AsyncEngine
    from localloom.server.drain import Drain
    from localloom.server.metrics import Metrics
    from localloom.server.models_manager import Lease, ModelsManager

__all__ = ["ResponsesService"]


class _Answer:
    """One response being built: ids, text, tool calls, usage, and its event numbering."""

    def __init__(self, req: ResponseRequest, model: str) -> None:
        self.req = req
        self.model = model
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.text = ""
        self.finish = "stop"
        self.calls: dict[int, dict[str, str]] = {}
        self.usage = (0, 0)
        self.seq = 0

    def take(self, chunk: Any) -> str:
        """Fold one chat chunk in; returns its new text."""
        if not chunk.choices:
            return ""
        choice = chunk.choices[0]
        self.finish = choice.finish_reason or self.finish
        for call in getattr(choice.delta, "tool_calls", None) or ():
            slot = self.calls.setdefault(getattr(call, "index", len(self.calls)),
                                         {"id": "", "name": "", "arguments": ""})
            slot["id"] = getattr(call, "id", None) or slot["id"]
            function = getattr(call, "function", None)
            slot["name"] += getattr(function, "name", None) or ""
            slot["arguments"] += getattr(function, "arguments", None) or ""
        delta = str(choice.delta.content or "")
        self.text += delta
        return delta

    def message(self, status: str = "completed") -> dict[str, Any]:
        """The output message item."""
        content = [] if status == "in_progress" else [self.part()]
        return {"type": "message", "id": self.item_id, "status": status,
                "role": "assistant", "content": content}

    def part(self) -> dict[str, Any]:
        """The output_text content part."""
        return {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}

    def has_message(self) -> bool:
        """Whether the output has a message item (any text, or no function call)."""
        return bool(self.text) or not self.calls

    def call_items(self, status: str = "completed") -> list[dict[str, Any]]:
        """One function_call item per call the model made."""
        return [{"type": "function_call", "id": f"fc_{self.id[5:]}_{n}",
                 "call_id": call["id"] or f"call_{n}", "name": call["name"],
                 "arguments": call["arguments"] if status == "completed" else "",
                 "status": status} for n, call in sorted(self.calls.items())]

    def output(self) -> list[dict[str, Any]]:
        """The output items: the message (if any) and the function calls."""
        return ([self.message()] if self.has_message() else []) + self.call_items()

    def body(self, status: str = "completed") -> dict[str, Any]:
        """The Response object."""
        done = status != "in_progress"
        incomplete = done and self.finish == "length"
        fmt = (self.req.text.format.model_dump(by_alias=True, exclude_none=True)
               if self.req.text else {"type": "text"})
        prompt, completion = self.usage
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "status": "incomplete" if incomplete else status, "model": self.model,
            "output": self.output() if done else [], "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": self.req.instructions, "metadata": {},
            "previous_response_id": self.req.previous_response_id,
            "temperature": self.req.temperature, "top_p": self.req.top_p,
            "max_output_tokens": self.req.max_output_tokens, "parallel_tool_calls": False,
            "tool_choice": self.req.tool_choice or "auto", "tools": self.req.tools or [],
            "text": {"format": fmt}, "store": self.req.store,
            "usage": {"input_tokens": prompt, "output_tokens": completion,
                      "total_tokens": prompt + completion,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}} if done else None}

    def event(self, kind: str, **fields: Any) -> bytes:
        """One SSE event of ``kind`` with its sequence number."""
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse_event(data, event=kind)

    def answer_message(self) -> dict[str, Any]:
        """The answer as a chat message, for the stored conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.calls:
            message["tool_calls"] = [
                {"id": c["id"] or f"call_{n}", "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for n, c in sorted(self.calls.items())]
        return message


class ResponsesService:
    """Serves ``/v1/responses`` (create, retrieve, delete)."""

    def __init__(self, *, engine: AsyncEngine, models: ModelsManager, metrics: Metrics,
                 drain: Drain, store: ResponseStore | None = None) -> None:
        self.engine = engine
        self.models = models
        self.metrics = metrics
        self.drain = drain
        self.store = store if store is not None else ResponseStore()

    async def create(self, request: Request) -> Response:
        """Run one response; an event stream when ``stream`` is true."""
        from localloom.server.body import json_object as _json_object

        body = await request.body()
        req = await asyncio.to_thread(lambda: ResponseRequest.parse(_json_object(body)))
        history = (self.store.get(req.previous_response_id).messages
                   if req.previous_response_id else [])
        turns = [*history, *req.input_messages()]
        system = [{"role": "system", "content": req.instructions}] if req.instructions else []
        params = {**req.chat_fields(), "messages": [*system, *turns], "stream": True}
        chat = await asyncio.to_thread(ChatCompletionRequest.parse, params)
        lease = await self.models.acquire(self.models.required_model(req.model))
        try:
            chunks = await self.engine.submit(chat, model=lease.model_id)
            assert isinstance(chunks, AsyncStream)  # stream=True
            first = await until_disconnected(request, self.drain, next_chunk(chunks))
        except BaseException:
            lease.release()
            raise
        if first is None:
            await aclose_stream(chunks)
            lease.release()
            return Response(status_code=CLIENT_CLOSED)
        answer = _Answer(req, lease.model_id)
        events = self._events(answer, first, chunks, lease, turns)

        async def close() -> None:
            await aclose_stream(chunks)
            lease.release()

        if req.stream:
            return EventStreamResponse(events, drain=self.drain, on_close=close)
        try:
            async for _ in events:
                pass
        finally:
            await close()
        return JSONResponse(answer.body())

    def retrieve(self, response_id: str) -> dict[str, Any]:
        """A stored response by id."""
        return self.store.get(response_id, param="response_id").body

    def delete(self, response_id: str) -> dict[str, Any]:
        """Forget a stored response."""
        self.store.delete(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def _events(self, answer: _Answer, first: Any, chunks: AsyncStream[Any],
                      lease: Lease, turns: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        try:
            yield answer.event("response.created", response=answer.body("in_progress"))
            yield answer.event("response.in_progress", response=answer.body("in_progress"))
            started = False
            chunk = first
            while chunk is not END:
                delta = answer.take(chunk)
                if delta and not started:
                    started = True
                    for event in _message_start(answer):
                        yield event
                if delta:
                    yield answer.event("response.output_text.delta", **_where(answer),
                                       delta=delta, logprobs=[])
                chunk = await next_chunk(chunks)
            if answer.has_message():
                if not started:
                    for event in _message_start(answer):
                        yield event
                for event in _message_end(answer):
                    yield event
            for event in _call_events(answer):
                yield event
            if chunks.usage is not None:
                answer.usage = (chunks.usage.prompt_tokens, chunks.usage.completion_tokens)
            self._finish(answer, lease, turns)
            final = answer.body()
            kind = "response.incomplete" if final["status"] == "incomplete" else \
                "response.completed"
            yield answer.event(kind, response=final)
        except LocalLoomError as exc:
            error = reply_for(exc).body["error"]
            yield answer.event("error", code=error.get("code"), message=error["message"],
                               param=error.get("param"))
        finally:
            await aclose_stream(chunks)
            lease.release()

    def _finish(self, answer: _Answer, lease: Lease, turns: list[dict[str, Any]]) -> None:
        prompt, completion = answer.usage
        self.metrics.observe_tokens(lease.model_id, prompt=prompt, completion=completion)
        if answer.req.store:
            self.store.put(StoredResponse(body=answer.body(),
                                          messages=[*turns, answer.answer_message()]))


def _where(answer: _Answer) -> dict[str, Any]:
    return {"item_id": answer.item_id, "output_index": 0, "content_index": 0}


def _message_start(answer: _Answer) -> list[bytes]:
    return [answer.event("response.output_item.added", output_index=0,
                         item=answer.message("in_progress")),
            answer.event("response.content_part.added", **_where(answer),
                         part={"type": "output_text", "text": "", "annotations": []})]


def _message_end(answer: _Answer) -> list[bytes]:
    return [answer.event("response.output_text.done", **_where(answer), text=answer.text,
                         logprobs=[]),
            answer.event("response.content_part.done", **_where(answer), part=answer.part()),
            answer.event("response.output_item.done", output_index=0, item=answer.message())]


def _call_events(answer: _Answer) -> list[bytes]:
    """Each function call as OpenAI streams it: added, arguments delta and done, item done."""
    events = []
    first = 1 if answer.has_message() else 0
    pending, done = answer.call_items("in_progress"), answer.call_items()
    for n, (item, final) in enumerate(zip(pending, done, strict=True)):
        where = {"item_id": item["id"], "output_index": first + n}
        events += [
            answer.event("response.output_item.added", output_index=first + n, item=item),
            answer.event("response.function_call_arguments.delta", **where,
                         delta=final["arguments"]),
            answer.event("response.function_call_arguments.done", **where,
                         name=final["name"], arguments=final["arguments"]),
            answer.event("response.output_item.done", output_index=first + n, item=final)]
    return events


