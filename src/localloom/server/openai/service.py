"""The OpenAI-compatible endpoints' logic: validate, lease the model, run, stream, count.

Example::

    service = OpenAIService(engine=engine, models=manager, metrics=metrics, drain=drain)
    response = await service.chat(request)
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match

from localloom.engine.guards import check_body
from localloom.errors import InvalidRequestError, LocalLoomError
from localloom.server.drain import Drain
from localloom.server.errors import reply_for
from localloom.server.metrics import Metrics
from localloom.server.models_manager import Lease, ModelsManager
from localloom.server.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    ModelStatus,
)
from localloom.server.sse import (
    CLIENT_CLOSED,
    DONE,
    END,
    EventStreamResponse,
    aclose_stream,
    next_chunk,
    sse_event,
    until_disconnected,
)

if TYPE_CHECKING:
    from localloom.catalog import ModelEntry
    from localloom.engine import AsyncEngine, ChatParams, CompletionParams
    from localloom.store import ModelStore

__all__ = ["CATCH_ALL", "OpenAIService"]

# The route under /v1 that answers every path no other route serves.
CATCH_ALL = "/{path:path}"
_SERVED = ("POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings, "
           "POST /v1/responses, GET /v1/models and GET /v1/models/{model}")
# OpenAI's other APIs: a request for one is told it is not supported (rather than mistyped).
_OPENAI_APIS = frozenset({
    "embeddings", "audio", "images", "files", "uploads", "batches",
    "fine_tuning", "moderations", "assistants", "threads", "vector_stores", "realtime",
    "evals", "containers", "conversations", "videos", "chatkit", "organization"})

_Request = ChatCompletionRequest | CompletionRequest
# (model id, stream) -> the engine call for one parsed request.
_Runner = Callable[[str, bool], Awaitable[Any]]


class OpenAIService:
    """Serves ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``."""

    def __init__(self, *, engine: AsyncEngine, models: ModelsManager, store: ModelStore,
                 metrics: Metrics, drain: Drain) -> None:
        self.engine = engine
        self.models = models
        self.store = store
        self.metrics = metrics
        self.drain = drain

    async def chat(self, request: Request) -> Response:
        """Run a chat completion (a stream of chunks when ``stream`` is true)."""
        def prepare(body: bytes) -> tuple[ChatCompletionRequest, dict[str, Any],
                                          list[dict[str, Any]]]:
            req = ChatCompletionRequest.parse(_json_object(body))
            params = _engine_params(req, exclude={"messages"})
            if req.stream:
                params["stream_options"] = {"include_usage": True}
            return req, params, [m.model_dump(exclude_none=True) for m in req.messages]

        # Parsing a body of up to 16 MiB (400,000 messages) takes seconds: not on the loop.
        req, params, messages = await asyncio.to_thread(prepare, await request.body())

        def run(model: str, stream: bool) -> Awaitable[Any]:
            create = self.engine.chat.completions.create
            call = cast("ChatParams", {**params, "model": model})
            if stream:
                return create(messages=messages, stream=True, **call)
            return create(messages=messages, stream=False, **call)

        return await self._serve(request, req, run)

    async def completions(self, request: Request) -> Response:
        """Run a text completion (a stream of chunks when ``stream`` is true)."""
        def prepare(body: bytes) -> tuple[CompletionRequest, dict[str, Any]]:
            req = CompletionRequest.parse(_json_object(body))
            params = _engine_params(req, exclude={"prompt"})
            if req.stream:
                params["stream_options"] = {"include_usage": True}
            return req, params

        req, params = await asyncio.to_thread(prepare, await request.body())
        prompt = req.prompt_text

        def run(model: str, stream: bool) -> Awaitable[Any]:
            create = self.engine.completions.create
            call = cast("CompletionParams", {**params, "model": model})
            if stream:
                return create(prompt=prompt, stream=True, **call)
            return create(prompt=prompt, stream=False, **call)

        return await self._serve(request, req, run)

    def list_models(self) -> ModelList:
        """Every model that answers without a download (loaded, cached, a local file, an
        installed package such as the starter's) in ``data``; the rest in ``not_ready``."""
        entries = self.models.catalog.entries()
        known = {entry.id for entry in entries}
        ready = [ModelCard(id=mid, created=0, status="loaded")  # a file outside the catalog
                 for mid in self.models.loaded if mid not in known]
        rest: list[ModelCard] = []
        for entry in entries:
            card = self._card(entry)
            (ready if card.status in ("loaded", "ready") else rest).append(card)
        return ModelList(data=ready, not_ready=rest)

    def get_model(self, model_id: str) -> ModelCard:
        """One model by id or alias (404 if unknown)."""
        return self._card(self.models.catalog.get(model_id))

    def _card(self, entry: ModelEntry) -> ModelCard:
        return ModelCard(id=entry.id, created=_created(entry.id, self.store, self.models),
                         status=self._status(entry), display_name=entry.display_name,
                         download_size=entry.download_size)

    def _status(self, entry: ModelEntry) -> ModelStatus:
        if self.models.is_loaded(entry.id):
            return "loaded"
        if self.store.is_cached(entry):
            return "ready"
        if entry.source.kind == "local":
            return "missing"
        if entry.source.kind == "pypi" and _importable(entry.import_name):
            return "ready"  # assembled from the installed package on first use
        return "download"

    def unsupported(self, request: Request, routes: Sequence[BaseRoute]) -> StarletteHTTPException:
        """The error for a path under /v1 that none of ``routes`` serves: 405 if another
        method of it is served, else a 404 saying what LocalLoom does not support."""
        scope = {**request.scope, "method": "_"}  # path matches come back PARTIAL
        allowed = sorted({method for route in routes
                          if isinstance(route, APIRoute) and not route.path.endswith(CATCH_ALL)
                          and route.matches(scope)[0] is Match.PARTIAL
                          for method in route.methods or ()})
        if allowed:
            return StarletteHTTPException(405, "Method Not Allowed",
                                          headers={"Allow": ", ".join(allowed)})
        path = request.url.path[:120]
        api = path.removeprefix("/v1/").split("/")[0]
        what = (f"LocalLoom does not support OpenAI's {api} API yet ({request.method} {path})"
                if api in _OPENAI_APIS else f"There is no {request.method} {path}")
        return StarletteHTTPException(404, f"{what}. LocalLoom serves {_SERVED}.")

    # -- shared path ------------------------------------------------------------------------

    async def _serve(self, request: Request, req: _Request, run: _Runner) -> Response:
        started = time.perf_counter()
        lease = await self.models.acquire(self._model_for(req), keep_alive=req.keep_alive)
        try:
            if not req.stream:
                return await self._once(request, lease, run, started)
            return await self._stream(request, req, lease, run, started)
        except BaseException:
            lease.release()
            raise

    def _model_for(self, req: _Request) -> str:
        if req.model:
            return req.model
        loaded = self.models.loaded
        if len(loaded) == 1:
            return loaded[0]
        raise InvalidRequestError(
            "'model' is required: name a model id (`GET /v1/models` lists them).", param="model")

    async def _once(self, request: Request, lease: Lease, run: _Runner,
                    started: float) -> Response:
        result = await until_disconnected(request, self.drain, run(lease.model_id, False))
        lease.release()
        if result is None:
            return Response(status_code=CLIENT_CLOSED)
        usage = getattr(result, "usage", None)
        if usage is not None:
            self.metrics.observe_tokens(lease.model_id, prompt=usage.prompt_tokens,
                                        completion=usage.completion_tokens)
        self.metrics.observe_ttft(lease.model_id, time.perf_counter() - started)
        return JSONResponse(_dump(result))

    async def _stream(self, request: Request, req: _Request, lease: Lease, run: _Runner,
                      started: float) -> Response:
        # Usage is always asked of the engine (for the token metrics) and passed on only to
        # clients that asked for it.
        stream: AsyncIterator[Any] = await run(lease.model_id, True)
        # The first chunk comes before the headers: an error up to here (context overflow,
        # a full queue) gets its real HTTP status instead of an event in a 200 stream.
        try:
            first = await until_disconnected(request, self.drain, next_chunk(stream))
        except BaseException:
            await aclose_stream(stream)
            raise
        if first is None:
            await aclose_stream(stream)
            lease.release()
            return Response(status_code=CLIENT_CLOSED)
        self.metrics.observe_ttft(lease.model_id, time.perf_counter() - started)
        events = self._events(first, stream, lease, wants_usage=req.include_usage)

        async def close() -> None:  # idempotent: _events' finally may have done it
            await aclose_stream(stream)
            lease.release()

        return EventStreamResponse(events, drain=self.drain, on_close=close)

    async def _events(self, first: Any, stream: AsyncIterator[Any], lease: Lease, *,
                      wants_usage: bool) -> AsyncIterator[bytes]:
        try:
            chunk = first
            while chunk is not END:
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    self.metrics.observe_tokens(lease.model_id, prompt=usage.prompt_tokens,
                                                completion=usage.completion_tokens)
                if usage is None or wants_usage:
                    yield sse_event(_dump(chunk))
                elif chunk.choices:  # usage riding on a content chunk: keep the content
                    yield sse_event(_dump(chunk.model_copy(update={"usage": None})))
                chunk = await next_chunk(stream)
            yield DONE
        except LocalLoomError as exc:
            yield sse_event(reply_for(exc).body)
        finally:
            await aclose_stream(stream)
            lease.release()



def _dump(model: Any) -> Any:
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json", by_alias=True)
    return model


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested 100,000 deep
        raise InvalidRequestError(
            f"The request body is not valid JSON ({exc}). Send a JSON object.") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    check_body(data)
    return data


def _engine_params(req: _Request, *, exclude: set[str]) -> dict[str, Any]:
    # Only what the client set: the engine's request model applies the one set of defaults.
    # keep_alive is the server's (the models manager honours it), not the engine's.
    return req.model_dump(exclude_unset=True, by_alias=True,
                          exclude={"model", "stream", "keep_alive", *exclude})


def _importable(module: str | None) -> bool:
    try:
        return module is not None and importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _created(model_id: str, store: ModelStore, models: ModelsManager) -> int:
    try:
        path = store.path_for(models.catalog.get(model_id))
        return int(path.stat().st_mtime)
    except (OSError, LocalLoomError):
        return 0
