"""Ollama's API on LocalLoom's engine: parse, lease the model, run, answer in NDJSON.

Generation goes through the engine's chat (or, for ``raw`` generate, completion) path, so
sampling, grammars, tools and limits behave as on ``/v1``. Errors answer in Ollama's shape,
``{"error": "..."}``, with the status of the server's one error table.

Example::

    service = OllamaService(engine=engine, models=manager, store=store, metrics=metrics,
                            drain=drain, openai=openai_service, management=management_service)
    response = await service.chat(request)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from localloom._validation import invalid_request
from localloom._version import __version__
from localloom.engine.embeddings import EmbeddingRequest
from localloom.engine.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    Usage,
    parse_keep_alive,
)
from localloom.engine.streams import AsyncStream
from localloom.errors import InvalidRequestError, LocalLoomError
from localloom.server.errors import reply_for
from localloom.server.ollama.names import facts, iso_time, remote_facts, resolve
from localloom.server.ollama.protocol import (
    IGNORED_HEADER,
    OLLAMA_API_VERSION,
    OllamaChatRequest,
    OllamaDeleteRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaModelRequest,
    OllamaPullRequest,
    Options,
)
from localloom.server.ollama.stream import NdjsonResponse, ndjson, pull_events
from localloom.server.pairing import PAIRING_SCOPE_KEY, pull_refusal
from localloom.server.sse import CLIENT_CLOSED, END, aclose_stream, next_chunk, until_disconnected

if TYPE_CHECKING:
    from localloom.engine import AsyncEngine
    from localloom.server.drain import Drain
    from localloom.server.management.service import ManagementService
    from localloom.server.metrics import Metrics
    from localloom.server.models_manager import Lease, ModelsManager
    from localloom.server.openai.service import OpenAIService
    from localloom.store import ModelStore

__all__ = ["OllamaService", "ollama_error"]

_OLLAMA_DOCS = "See Ollama's API (docs/api.md) for the field."

_M = TypeVar("_M", bound=BaseModel)
_NS = 1_000_000_000


def ollama_error(exc: BaseException) -> JSONResponse:
    """Any error as Ollama answers it: ``{"error": message}`` with the table's status."""
    reply = reply_for(exc)
    message = reply.body.get("error", {}).get("message", "error")
    return JSONResponse({"error": message}, status_code=reply.status, headers=dict(reply.headers))


@dataclass
class _Run:
    """One generation's name, clock and running totals for the final ``done`` line."""

    name: str
    chat: bool  # the answer's shape: a message (/api/chat) or a response (/api/generate)
    raw: bool = False  # completion chunks (raw generate), else chat chunks
    started: float = field(default_factory=time.perf_counter)
    loaded: float = 0.0
    first: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    done_reason: str = "stop"
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def line(self, text: str, thinking: str = "", *, done: bool = False) -> dict[str, Any]:
        """One NDJSON line: a delta, or (``done``) the final line with the counts."""
        head: dict[str, Any] = {"model": self.name, "created_at": iso_time(time.time())}
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if done and self.tool_calls:
                message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            head["message"] = message
        else:
            head["response"] = text
            if thinking:
                head["thinking"] = thinking
        head["done"] = done
        if done:
            now = time.perf_counter()
            first = self.first or now
            head.update(
                done_reason=self.done_reason, total_duration=int((now - self.started) * _NS),
                load_duration=int((self.loaded - self.started) * _NS),
                prompt_eval_count=self.prompt_tokens,
                prompt_eval_duration=int(max(0.0, first - self.loaded) * _NS),
                eval_count=self.completion_tokens, eval_duration=int((now - first) * _NS))
        return head

    def take(self, chunk: Any) -> tuple[str, str]:
        """Fold a streamed chunk in; returns its text and thinking."""
        if not chunk.choices:
            return "", ""
        choice = chunk.choices[0]
        if choice.finish_reason:
            # Ollama ends a tool-calling answer with "stop" (its calls are in the message).
            self.done_reason = "stop" if choice.finish_reason == "tool_calls" else \
                choice.finish_reason
        if self.raw:
            return str(choice.text or ""), ""
        for call in getattr(choice.delta, "tool_calls", None) or ():
            self._add_call(call)
        thinking = getattr(choice.delta, "reasoning_content", None) or ""
        return str(choice.delta.content or ""), str(thinking)

    def count(self, usage: Usage | None) -> None:
        """The finished stream's token counts (None: it ended without any)."""
        if usage is not None:
            self.prompt_tokens, self.completion_tokens = (usage.prompt_tokens,
                                                          usage.completion_tokens)

    def _add_call(self, call: Any) -> None:
        function = getattr(call, "function", None)
        slot = self.tool_calls.setdefault(
            getattr(call, "index", len(self.tool_calls)),
            {"function": {"name": "", "arguments": ""}})
        if function is not None:
            slot["function"]["name"] += getattr(function, "name", None) or ""
            slot["function"]["arguments"] += getattr(function, "arguments", None) or ""

    def finish_calls(self) -> None:
        """Streamed tool arguments are JSON text; Ollama sends them as an object."""
        for slot in self.tool_calls.values():
            text = slot["function"]["arguments"] or "{}"
            try:
                slot["function"]["arguments"] = json.loads(text)
            except ValueError:
                slot["function"]["arguments"] = {"_raw": text}


class OllamaService:
    """Serves Ollama's ``/api/*`` endpoints (chat, generate, embed, tags, show, pull, ...)."""

    def __init__(self, *, engine: AsyncEngine, models: ModelsManager, store: ModelStore,
                 metrics: Metrics, drain: Drain, openai: OpenAIService,
                 management: ManagementService) -> None:
        self.engine = engine
        self.models = models
        self.store = store
        self.metrics = metrics
        self.drain = drain
        self.openai = openai
        self.management = management

    async def answer(self, work: Callable[[], Awaitable[Response]]) -> Response:
        """Run an endpoint, turning any error into Ollama's error body."""
        try:
            return await work()
        except (LocalLoomError, StarletteHTTPException) as exc:
            return ollama_error(exc)

    # -- generation ---------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        """``POST /api/chat``: NDJSON lines of message deltas (one object unless streaming)."""
        req = await _parse(request, OllamaChatRequest)
        body = await asyncio.to_thread(req.engine_body)
        if not body["messages"]:  # Ollama's way to load (or, keep_alive 0, unload) a model
            return _noted(await self._load_only(request, req.model_name, req.keep_alive,
                                                req.options, chat=True), req.options)
        return _noted(await self._generate(request, req.model_name, req.keep_alive, req.stream,
                                           body, req.options, chat=True), req.options)

    async def generate(self, request: Request) -> Response:
        """``POST /api/generate``: a prompt (and system text) answered as NDJSON lines."""
        req = await _parse(request, OllamaGenerateRequest)
        body = req.engine_body()
        if not req.prompt and not req.raw:
            return _noted(await self._load_only(request, req.model_name, req.keep_alive,
                                                req.options, chat=False), req.options)
        return _noted(await self._generate(request, req.model_name, req.keep_alive, req.stream,
                                           body, req.options, chat=False, raw=req.raw),
                      req.options)

    async def _lease(self, request: Request, name: str, keep_alive: object,
                     options: Options | None = None) -> Lease:
        """Lease the model. A paired extension without the ``pull`` scope may not use one
        that is not downloaded: loading it would download it. ``num_ctx`` is checked
        against the loaded context (LocalLoom does not reload per request as Ollama does)."""
        keep = _keep_alive(keep_alive)
        model_id = self._remote_id(name)
        if model_id is None:  # an upstream's model has nothing to download
            entry = resolve(self.models.catalog, name)
            model_id = entry.id
            why = await asyncio.to_thread(pull_refusal, request.scope.get(PAIRING_SCOPE_KEY),
                                          entry.id, self.models.catalog, self.store)
            if why is not None:
                raise StarletteHTTPException(403, why)
        lease = await self.models.acquire(model_id, keep_alive=keep)
        num_ctx = options.num_ctx if options else None
        if num_ctx:  # 0: unset, as Ollama reads it
            try:
                loaded = int((await self.engine.model_info(lease.model_id)).n_ctx)
            except BaseException:
                lease.release()
                raise
            if num_ctx > loaded:
                lease.release()
                raise InvalidRequestError(
                    f"options.num_ctx is {num_ctx}, but '{lease.model_id}' runs with a "
                    f"{loaded}-token context, which LocalLoom sets for every client when it "
                    f"loads a model (it does not reload per request). Send num_ctx <= "
                    f"{loaded} or leave it out, or restart the server with a larger "
                    "LOCALLOOM_N_CTX (docs/OLLAMA.md).", param="options.num_ctx")
        return lease

    async def _load_only(self, request: Request, name: str, keep_alive: object,
                         options: Options | None, *, chat: bool) -> Response:
        keep = _keep_alive(keep_alive)
        run = _Run(name=name, chat=chat)
        if keep == 0:
            if self._remote_id(name) is None:  # an upstream's model is never loaded here
                await self.models.unload(resolve(self.models.catalog, name).id)
            run.done_reason = "unload"
        else:
            (await self._lease(request, name, keep_alive, options)).release()
            run.done_reason = "load"
        run.loaded = time.perf_counter()
        return JSONResponse(run.line("", done=True))

    def _remote_id(self, name: str) -> str | None:
        """The model an upstream serves under ``name`` (``:latest`` optional), else None."""
        for model_id in (name, name.removesuffix(":latest")):
            if self.engine.is_remote(model_id):
                return model_id
        return None

    async def _generate(self, request: Request, name: str, keep_alive: object, stream: bool,
                        body: dict[str, Any], options: Options | None, *, chat: bool,
                        raw: bool = False) -> Response:
        run = _Run(name=name, chat=chat, raw=raw)
        typed = await asyncio.to_thread(_engine_request, body, raw=raw)  # before any load
        lease = await self._lease(request, name, keep_alive, options)
        run.loaded = time.perf_counter()
        try:
            chunks = await self._start(lease.model_id, typed)
            first = await until_disconnected(request, self.drain, next_chunk(chunks))
        except BaseException:
            lease.release()
            raise
        if first is None:
            await aclose_stream(chunks)
            lease.release()
            return Response(status_code=CLIENT_CLOSED)
        run.first = time.perf_counter()
        self.metrics.observe_ttft(lease.model_id, run.first - run.started)
        lines = self._lines(run, first, chunks, lease)

        async def close() -> None:
            await aclose_stream(chunks)
            lease.release()

        if stream:
            return NdjsonResponse(lines, drain=self.drain, on_close=close)
        try:
            return JSONResponse(await _collect(lines))
        finally:
            await close()

    async def _start(self, model: str,
                     typed: ChatCompletionRequest | CompletionRequest) -> AsyncStream[Any]:
        """Submit the engine's typed request as a stream; its token counts come from
        ``stream.usage`` when it ends."""
        stream: Any
        if isinstance(typed, CompletionRequest):  # one call per overload of submit
            stream = await self.engine.submit(typed, model=model)
        else:
            stream = await self.engine.submit(typed, model=model)
        assert isinstance(stream, AsyncStream)  # stream=True
        return stream

    async def _lines(self, run: _Run, first: Any, chunks: AsyncStream[Any],
                     lease: Lease) -> AsyncIterator[bytes]:
        try:
            chunk = first
            while chunk is not END:
                text, thinking = run.take(chunk)
                if text or thinking:
                    yield ndjson(run.line(text, thinking))
                chunk = await next_chunk(chunks)
            run.finish_calls()
            run.count(chunks.usage)
            self.metrics.observe_tokens(lease.model_id, prompt=run.prompt_tokens,
                                        completion=run.completion_tokens)
            yield ndjson(run.line("", done=True))
        except LocalLoomError as exc:
            yield ndjson({"error": str(exc)})
        finally:
            await aclose_stream(chunks)
            lease.release()

    # -- embeddings ---------------------------------------------------------------------

    async def embed(self, request: Request, *, legacy: bool = False) -> Response:
        """``POST /api/embed`` (``embeddings``: a list) or the older ``/api/embeddings``."""
        req = await _parse(request, OllamaEmbedRequest)
        if req.options:  # validated; an embedding has no sampling (the header names them)
            req.options.engine_fields()
        started = time.perf_counter()
        lease = await self._lease(request, req.model_name, req.keep_alive, req.options)
        loaded = time.perf_counter()
        try:
            data: dict[str, Any] = {"model": lease.model_id, "input": req.texts()}
            if req.dimensions:
                data["dimensions"] = req.dimensions
            result = await self.engine.embeddings.create_from(EmbeddingRequest.parse(data))
        finally:
            lease.release()
        vectors = [list(cast("list[float]", item.embedding)) for item in result.data]
        self.metrics.observe_tokens(lease.model_id, prompt=result.usage.prompt_tokens,
                                    completion=0)
        if legacy:
            return _noted(JSONResponse({"embedding": vectors[0]}), req.options, embed=True)
        return _noted(JSONResponse({
            "model": req.model_name, "embeddings": vectors,
            "total_duration": int((time.perf_counter() - started) * _NS),
            "load_duration": int((loaded - started) * _NS),
            "prompt_eval_count": result.usage.prompt_tokens}), req.options, embed=True)

    # -- models -------------------------------------------------------------------------

    def tags(self) -> dict[str, Any]:
        """``GET /api/tags``: every model that answers without a download; an upstream's
        are marked ``remote`` (the upstreams serving it, comma-separated)."""
        out = []
        for card in self.openai.list_models().data:
            if card.remote:
                out.append({**remote_facts(card.id), "remote": card.remote,
                            "modified_at": self._remote_modified()})
            elif card.id in self.models.catalog:  # a loaded file outside it has no facts
                entry = self.models.catalog.get(card.id)
                out.append({**facts(entry), "modified_at": iso_time(card.created)})
        return {"models": out}

    async def show(self, request: Request) -> Response:
        """``POST /api/show``: details, context length, template and capabilities."""
        req = await _parse(request, OllamaModelRequest)
        remote = self._remote_id(req.model_name)
        if remote is not None:
            return JSONResponse(await self._show_remote(remote))
        entry = resolve(self.models.catalog, req.model_name)
        info = facts(entry)
        family = info["details"]["family"]
        # Ollama's names: no "chat" (every generate model chats), "thinking" for reasoning.
        capabilities = [{"reasoning": "thinking"}.get(c, c) for c in entry.capabilities
                        if c != "chat"]
        return JSONResponse({
            "modelfile": f"# LocalLoom catalog entry {entry.id}\nFROM {entry.id}\n",
            # Continue reads num_ctx here and sends it back on every request.
            "parameters": f"num_ctx {await self._context(entry.id, entry.context_length)}",
            "template": entry.chat_template or "",
            "license": entry.license, "details": info["details"],
            "model_info": {"general.architecture": family, "general.basename": entry.id,
                           f"{family}.context_length": entry.context_length},
            "capabilities": capabilities,
            "modified_at": iso_time(self.openai.get_model(entry.id).created)})

    def _remote_modified(self) -> str:
        """An upstream's model's ``modified_at``: when this server found its upstreams."""
        upstreams = self.engine.engine.upstreams
        return iso_time(upstreams.created if upstreams is not None else 0)

    async def _show_remote(self, model_id: str) -> dict[str, Any]:
        """``/api/show`` of a model an upstream serves: what the front knows of it."""
        info = remote_facts(model_id)
        family = info["details"]["family"]
        n_ctx = int((await self.engine.model_info(model_id)).n_ctx)
        upstreams = ",".join(self.engine.remote_models().get(model_id, []))
        return {
            "modelfile": f"# served by upstream {upstreams}\nFROM {model_id}\n",
            "parameters": f"num_ctx {n_ctx}", "template": "", "license": "",
            "details": info["details"], "remote": upstreams,
            "model_info": {"general.architecture": family, "general.basename": model_id,
                           f"{family}.context_length": n_ctx},
            # tools are forwarded; an upstream that cannot take them answers so itself
            "capabilities": ["completion", "tools"],
            "modified_at": self._remote_modified()}

    async def _context(self, model_id: str, trained: int) -> int:
        """The per-request context the model runs (or will run) with: the loaded one, else
        the engine's rule (the setting, else the trained context capped)."""
        if model_id in self.models.loaded:
            with contextlib.suppress(LocalLoomError):  # unloaded meanwhile: planned it is
                return int((await self.engine.model_info(model_id)).n_ctx)
        settings = self.management.settings
        return settings.n_ctx or min(trained, settings.max_default_ctx)

    async def pull(self, request: Request) -> Response:
        """``POST /api/pull``: download and verify, progress as Ollama streams it."""
        req = await _parse(request, OllamaPullRequest)
        entry = resolve(self.models.catalog, req.model_name)
        digest = str(facts(entry)["digest"])
        if req.stream:
            events = pull_events(self.store, entry, digest)
            return NdjsonResponse((ndjson(e) async for e in events), drain=self.drain)
        from localloom.server.management.service import _in_daemon_thread

        await _in_daemon_thread(lambda: self.store.pull(entry))  # errors get their status
        return JSONResponse({"status": "success"})

    async def delete(self, request: Request) -> Response:
        """``DELETE /api/delete``: unload the model and delete its downloaded file."""
        req = await _parse(request, OllamaDeleteRequest)
        entry = resolve(self.models.catalog, req.model_name)
        if entry.source.kind == "local":
            raise InvalidRequestError(
                f"'{req.model_name}' is your own file ({entry.source.path}), which LocalLoom "
                "never deletes; remove it from models.toml to forget it.", param="model")
        result = await self.management.delete(entry.id)
        if not (result.deleted or result.unloaded):
            return JSONResponse({"error": f"model '{req.model_name}' not found"},
                                status_code=404)
        return Response(status_code=200)

    def version(self) -> dict[str, str]:
        """``GET /api/version``: the Ollama API version followed, and LocalLoom's own."""
        return {"version": OLLAMA_API_VERSION, "localloom": __version__}



def _noted(response: Response, options: Options | None, *, embed: bool = False) -> Response:
    """The response with X-LocalLoom-Ignored-Options naming the options accepted but not
    applied (load settings; for an embedding, every sampling option too)."""
    if options is None:
        return response
    names = options.not_applied()
    if embed:
        names = sorted({*names, *(k for k in (options.model_extra or {}) if k not in names),
                        *(["num_predict"] if options.num_predict is not None else [])})
    if names:
        response.headers[IGNORED_HEADER] = ", ".join(names)
    return response


async def _collect(lines: AsyncIterator[bytes]) -> dict[str, Any]:
    """A stream of lines folded into Ollama's single non-streaming answer."""
    text: list[str] = []
    thinking: list[str] = []
    last: dict[str, Any] = {}
    async for raw in lines:
        last = json.loads(raw)
        if "error" in last:
            raise InvalidRequestError(str(last["error"]))
        where = last.get("message", last)  # chat: the message; generate: the line itself
        text.append(where.get("content", where.get("response", "")) or "")
        thinking.append(where.get("thinking", ""))
    where = last.get("message", last)
    where["content" if "message" in last else "response"] = "".join(text)
    if any(thinking):
        where["thinking"] = "".join(thinking)
    return last


def _engine_request(body: dict[str, Any], *, raw: bool
                    ) -> ChatCompletionRequest | CompletionRequest:
    """The engine's typed request for an Ollama body, built once: a completion for a
    raw generate, a chat otherwise; always streamed (the service collects a non-stream)."""
    data = {**body, "stream": True}
    return CompletionRequest.parse(data) if raw else ChatCompletionRequest.parse(data)


def _keep_alive(value: object) -> float | None:
    try:
        return parse_keep_alive(value)
    except ValueError as exc:
        raise InvalidRequestError(f"'keep_alive': {exc}.", param="keep_alive") from exc


async def _parse(request: Request, model: type[_M]) -> _M:
    from localloom.server.body import json_object as _json_object

    body = await request.body()
    try:
        return model.model_validate(_json_object(body))
    except ValidationError as exc:
        raise invalid_request(exc.errors(), model=model, advice=_OLLAMA_DOCS) from exc
