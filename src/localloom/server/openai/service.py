"""The OpenAI-compatible endpoints' logic: lease the model, run, stream, count.

The route hands over the request parsed once (:mod:`localloom.server.body`); the service
passes it, typed, to :meth:`AsyncEngine.submit`.

Example::

    service = OpenAIService(engine=engine, models=manager, metrics=metrics, drain=drain)
    response = await service.chat(request, ChatCompletionRequest.parse(body))
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match

from localloom.engine.streams import AsyncStream
from localloom.errors import LocalLoomError
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
from localloom.server.pairing import PAIRING_SCOPE_KEY, Pairing, pull_refusal
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
    from localloom.engine.engine import AsyncEngine
    from localloom.engine.protocol import Usage
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


class OpenAIService:
    """Serves ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``."""

    def __init__(self, *, engine: AsyncEngine, models: ModelsManager, store: ModelStore,
                 metrics: Metrics, drain: Drain) -> None:
        self.engine = engine
        self.models = models
        self.store = store
        self.metrics = metrics
        self.drain = drain

    async def chat(self, request: Request, req: ChatCompletionRequest) -> Response:
        """Run a parsed chat completion (a stream of chunks when ``stream`` is true)."""
        return await self._serve(request, req)

    async def completions(self, request: Request, req: CompletionRequest) -> Response:
        """Run a parsed text completion (a stream of chunks when ``stream`` is true)."""
        return await self._serve(request, req)

    def list_models(self) -> ModelList:
        """Every model that answers without a download (loaded, cached, a local file, an
        installed package such as the starter's) in ``data``; the rest in ``not_ready``."""
        remote = self.engine.remote_models()  # an upstream's model shadows a local one
        entries = [e for e in self.models.catalog.entries() if e.id not in remote]
        known = {entry.id for entry in entries}
        ready = [ModelCard(id=mid, created=0, status="loaded")  # a file outside the catalog
                 for mid in self.models.loaded if mid not in known]
        ready += [_remote_card(mid, names) for mid, names in remote.items()]
        rest: list[ModelCard] = []
        for entry in entries:
            card = self._card(entry)
            (ready if card.status in ("loaded", "ready") else rest).append(card)
        return ModelList(data=ready, not_ready=rest)

    def get_model(self, model_id: str) -> ModelCard:
        """One model by id or alias (404 if unknown)."""
        names = self.engine.remote_models().get(model_id)
        if names is not None:
            return _remote_card(model_id, names)
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

    async def _serve(self, request: Request, req: _Request) -> Response:
        started = time.perf_counter()
        model_id = self.models.required_model(req.model)
        pairing: Pairing | None = request.scope.get(PAIRING_SCOPE_KEY)
        if pairing is not None:  # a paired extension may not make the server download
            why = await asyncio.to_thread(pull_refusal, pairing, model_id, self.models.catalog,
                                          request.app.state.parts.store)
            if why is not None:
                raise StarletteHTTPException(403, why)
        lease = await self.models.acquire(model_id, keep_alive=req.keep_alive)
        try:
            if not req.stream:
                return await self._once(request, req, lease, started)
            return await self._stream(request, req, lease, started)
        except BaseException:
            lease.release()
            raise

    async def _once(self, request: Request, req: _Request, lease: Lease,
                    started: float) -> Response:
        engine: AsyncEngine = self.engine
        result = await until_disconnected(request, self.drain,
                                          engine.submit(req, model=lease.model_id))
        lease.release()
        if result is None:
            return Response(status_code=CLIENT_CLOSED)
        self._count(lease, result.usage)
        self.metrics.observe_ttft(lease.model_id, time.perf_counter() - started)
        return JSONResponse(_dump(result))

    async def _stream(self, request: Request, req: _Request, lease: Lease,
                      started: float) -> Response:
        engine: AsyncEngine = self.engine
        stream = await engine.submit(req, model=lease.model_id)
        assert isinstance(stream, AsyncStream)  # req.stream is true
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
        events = self._events(first, stream, lease)

        async def close() -> None:  # idempotent: _events' finally may have done it
            await aclose_stream(stream)
            lease.release()

        return EventStreamResponse(events, drain=self.drain, on_close=close)

    async def _events(self, first: Any, stream: AsyncStream[Any],
                      lease: Lease) -> AsyncIterator[bytes]:
        try:
            chunk = first
            while chunk is not END:
                yield sse_event(_dump(chunk))
                chunk = await next_chunk(stream)
            # The stream keeps its token counts whether or not the client asked for them
            # in a chunk (stream_options.include_usage).
            self._count(lease, stream.usage)
            yield DONE
        except LocalLoomError as exc:
            yield sse_event(reply_for(exc).body)
        finally:
            await aclose_stream(stream)
            lease.release()

    def _count(self, lease: Lease, usage: Usage | None) -> None:
        if usage is not None:
            self.metrics.observe_tokens(lease.model_id, prompt=usage.prompt_tokens,
                                        completion=usage.completion_tokens)


def _remote_card(model_id: str, upstreams: list[str]) -> ModelCard:
    return ModelCard(id=model_id, created=0, status="ready", owned_by="upstream",
                     remote=",".join(upstreams))


def _dump(model: Any) -> Any:
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json", by_alias=True)
    return model


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
