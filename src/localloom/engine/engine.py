"""``Engine`` and ``AsyncEngine``: WebLLM's MLCEngine surface, in Python, on llama.cpp.

Example::

    from localloom import Engine
    with Engine() as engine:
        engine.reload("starter", progress_callback=print)
        r = engine.chat.completions.create(messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=64)
        print(r.choices[0].message.content)
        for chunk in engine.chat.completions.create(messages=[...], stream=True):
            print(chunk.choices[0].delta.content or "", end="")

A model id is a catalog id (downloaded through the store when missing) or a path to a
local ``.gguf`` file. Many threads may call ``create`` at once: requests are batched onto
the model by its scheduler thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import psutil
from typing_extensions import Unpack

from localloom.config import Settings
from localloom.engine.embeddings import AsyncEmbeddings, Embeddings
from localloom.engine.outbox import Sink
from localloom.engine.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChatParams,
    Completion,
    CompletionParams,
    CompletionRequest,
)
from localloom.engine.responses import ChatAssembler, CompletionAssembler, ResponseMeta
from localloom.engine.runner import LoadedModelInfo, ModelRunner
from localloom.engine.runtime import LogControl
from localloom.engine.streams import (
    Assembler,
    AsyncStream,
    BufferedSink,
    Cancellable,
    Stream,
    acollect,
    async_sink,
    collect,
    resolve_future,
)
from localloom.errors import InvalidRequestError, LocalLoomError, ModelNotLoadedError

if TYPE_CHECKING:
    from localloom.catalog import Catalog, ModelEntry
    from localloom.engine.scheduler import Scheduler
    from localloom.store import ModelStore
    from localloom.upstream import UpstreamConfig, Upstreams

__all__ = [
    "AsyncEngine",
    "Engine",
    "EngineRequest",
    "InitProgressReport",
    "LoadedModelInfo",
    "MessageInput",
    "RuntimeStats",
]

MessageInput = Mapping[str, Any] | ChatMessage
EngineRequest = ChatCompletionRequest | CompletionRequest
ProgressFn = Callable[["InitProgressReport"], None]
_DOWNLOAD_SHARE = 0.8  # of a catalog model's progress bar; loading takes the rest


@dataclass(frozen=True)
class InitProgressReport:
    """WebLLM's progress report: overall fraction, a line of text, seconds since start."""

    progress: float
    text: str
    time_elapsed: float


@dataclass(frozen=True)
class RuntimeStats:
    """Speed and memory of one loaded model (the last finished request's figures)."""

    model: str
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    ttft_s: float
    memory_bytes: int
    model_bytes: int
    kv_cache_bytes: int
    requests_running: int
    requests_waiting: int
    n_parallel: int
    n_ctx: int
    steps: int
    prompt_tokens_total: int
    generated_tokens_total: int
    lookup_drafted: int = 0  # prompt lookup: tokens guessed ahead, and how many were right
    lookup_accepted: int = 0
    threads: int = 0  # compute threads of the last step (fewer while other work is busy)

    @property
    def text(self) -> str:
        """One line, like WebLLM's ``runtimeStatsText``."""
        return (f"prefill: {self.prefill_tokens_per_s:.1f} tokens/s, decode: "
                f"{self.decode_tokens_per_s:.1f} tokens/s, TTFT: {self.ttft_s * 1000:.0f} ms, "
                f"memory: {self.memory_bytes / 2**20:.0f} MiB")


@dataclass(frozen=True)
class _Target:
    id: str
    path: Path | None
    entry: ModelEntry | None


class _Progress:
    """Maps download and load fractions of model ``index`` of ``count`` onto 0..1."""

    def __init__(self, callback: ProgressFn | None, start: float, index: int, count: int,
                 download_share: float) -> None:
        self.callback, self.start = callback, start
        self.index, self.count, self.share = index, count, download_share
        self._last_load = -1.0

    def report(self, fraction: float, text: str) -> None:
        if self.callback is not None:
            overall = (self.index + min(max(fraction, 0.0), 1.0)) / self.count
            self.callback(InitProgressReport(overall, text, time.monotonic() - self.start))

    def download(self, fraction: float, done: int, total: int, text: str) -> None:
        self.report(self.share * fraction, text)

    def load(self, fraction: float) -> None:
        if fraction - self._last_load < 0.05 and fraction < 1.0:
            return  # llama.cpp reports every tensor; a few steps are enough
        self._last_load = fraction
        self.report(self.share + (1 - self.share) * fraction,
                    f"Loading model into memory: {fraction:.0%}")


def _looks_like_path(model_id: str) -> bool:
    return model_id.lower().endswith(".gguf") or "/" in model_id or "\\" in model_id


def _shutdown(runners: dict[str, ModelRunner], log: LogControl,
              upstreams: Upstreams | None = None) -> None:
    if upstreams is not None:
        upstreams.close()
    log.install()  # freeing logs too; another Engine may have restored the default
    for runner in list(runners.values()):
        runner.close()
    runners.clear()
    log.release()


def _upstreams(settings: Settings, extra: Sequence[UpstreamConfig | str]) -> Upstreams | None:
    if not extra and not settings.upstreams_configured:
        return None  # no upstreams: the package is not even imported
    from localloom.upstream import Upstreams

    return Upstreams.from_settings(settings, extra)


def _remote_params(req: EngineRequest) -> dict[str, Any]:
    """What the client set, as JSON, for an upstream (it applies its own defaults), and
    whether the caller streams (a whole answer is asked for whole)."""
    return {**req.model_dump(mode="json", exclude_unset=True, by_alias=True),
            "stream": req.stream}


def _check_kwargs(params: Mapping[str, Any]) -> None:
    # Other unknown names are refused by the request model, which says what to do instead.
    if "keep_alive" in params:
        raise InvalidRequestError(
            "'keep_alive' is a server option (`localloom serve`). In the library a model "
            "stays loaded until engine.unload(model) or engine.close().", param="keep_alive")


class Engine:
    """Load models and generate, OpenAI-style; thread-safe.

    ``verbose=True`` shows llama.cpp's own log on stderr (hidden by default).
    ``upstream`` adds OpenAI-compatible servers (``"NAME=URL"`` or
    :class:`~localloom.upstream.UpstreamConfig`) to those of ``settings``: the models they
    serve are used like local ones (see :mod:`localloom.upstream`).
    """

    def __init__(self, settings: Settings | None = None, *, catalog: Catalog | None = None,
                 store: ModelStore | None = None, verbose: bool = False,
                 upstream: Sequence[UpstreamConfig | str] = ()) -> None:
        self.settings = settings if settings is not None else Settings()
        self.upstreams = _upstreams(self.settings, upstream)
        self._catalog = catalog
        self._store = store
        self._runners: dict[str, ModelRunner] = {}
        self._lock = threading.RLock()
        self._load_lock = threading.Lock()
        self._log = LogControl(verbose)
        self._log.install()
        self._finalizer = weakref.finalize(self, _shutdown, self._runners, self._log,
                                           self.upstreams)
        self.chat = Chat(self)
        self.completions = Completions(self)
        self.embeddings = Embeddings(self)

    # ----------------------------------------------------------------- models

    def _get_catalog(self) -> Catalog:
        if self._catalog is None:
            from localloom.catalog import Catalog

            self._catalog = Catalog(self.settings)
        return self._catalog

    def _get_store(self) -> ModelStore:
        if self._store is None:
            from localloom.store import ModelStore

            self._store = ModelStore(self.settings)
        return self._store

    def _resolve(self, model_id: str) -> _Target:
        if _looks_like_path(model_id) or Path(model_id).expanduser().is_file():
            return _Target(model_id, Path(model_id).expanduser(), None)
        entry = self._get_catalog().get(model_id)
        return _Target(entry.id, None, entry)

    def reload(self, model_id: str | Sequence[str],
               progress_callback: ProgressFn | None = None) -> None:
        """Afterwards exactly these models are loaded (others are unloaded), WebLLM-style.

        Missing catalog models are downloaded first; ``progress_callback`` receives
        :class:`InitProgressReport` through both phases.
        """
        ids = [model_id] if isinstance(model_id, str) else list(model_id)
        if not ids:
            raise InvalidRequestError("reload() needs at least one model id.", param="model")
        ids = [m for m in ids if not self.is_remote(m)]  # an upstream's needs no loading
        targets = [self._resolve(m) for m in ids]  # unknown ids fail before any change
        with self._load_lock:
            keep = {t.id for t in targets}
            for mid in list(self._runners):
                if mid not in keep:
                    self._unload_one(mid)
            self._load_targets(targets, progress_callback)

    def load(self, model_id: str, progress_callback: ProgressFn | None = None) -> None:
        """Load one more model, keeping the others loaded (an upstream's: nothing to do)."""
        if self.is_remote(model_id):
            return
        target = self._resolve(model_id)
        with self._load_lock:
            self._load_targets([target], progress_callback)

    def _load_targets(self, targets: list[_Target], callback: ProgressFn | None) -> None:
        start = time.monotonic()
        self._log.install()  # another Engine may have restored the default log since
        for i, t in enumerate(targets):
            progress = _Progress(callback, start, i, len(targets),
                                 _DOWNLOAD_SHARE if t.path is None else 0.0)
            with self._lock:
                runner = self._runners.pop(t.id, None)
                if runner is not None:  # already loaded: make it the most recent
                    self._runners[t.id] = runner
                    continue
            path = t.path
            if path is None:
                assert t.entry is not None
                path = self._get_store().ensure(t.entry, progress=progress.download)
            runner = ModelRunner(t.id, path, t.entry, self.settings, progress=progress.load)
            with self._lock:
                self._runners[t.id] = runner
        if callback is not None:
            elapsed = time.monotonic() - start
            callback(InitProgressReport(1.0, f"Finished loading in {elapsed:.1f} s", elapsed))

    def unload(self, model_id: str | None = None) -> None:
        """Unload one model, or all with None; unknown ids are ignored."""
        with self._load_lock:
            for mid in [model_id] if model_id is not None else list(self._runners):
                self._unload_one(mid)

    def _unload_one(self, model_id: str) -> None:
        with self._lock:
            runner = self._runners.pop(model_id, None)
        if runner is not None:
            runner.close()

    @property
    def loaded_model(self) -> str | None:
        """The most recently loaded model id, or None."""
        with self._lock:
            return next(reversed(self._runners), None)

    @property
    def loaded_models(self) -> list[str]:
        """Every loaded model id, oldest first."""
        with self._lock:
            return list(self._runners)

    def _runner(self, model: str | None) -> ModelRunner:
        with self._lock:
            if model is None:
                if not self._runners:
                    raise ModelNotLoadedError("No model is loaded. Call engine.reload('MODEL') "
                                              "first (`localloom models` lists them).")
                return next(reversed(self._runners.values()))
            runner = self._runners.get(model)
        if runner is None and not _looks_like_path(model):
            try:  # an alias of a loaded catalog model
                runner = self._runners.get(self._get_catalog().get(model).id)
            except LocalLoomError:
                runner = None
        if runner is None:
            raise ModelNotLoadedError(
                f"Model '{model}' is not loaded (loaded: "
                f"{', '.join(self.loaded_models) or 'none'}). Call engine.load('{model}') first.")
        return runner

    def is_remote(self, model_id: str | None) -> bool:
        """Whether an upstream serves ``model_id`` (then no local model of that name is
        used)."""
        return self.upstreams is not None and self.upstreams.pool(model_id) is not None

    def remote_models(self) -> dict[str, list[str]]:
        """Each model an upstream serves -> the upstreams serving it."""
        return {} if self.upstreams is None else self.upstreams.models()

    def model_info(self, model_id: str | None = None) -> LoadedModelInfo:
        """Id, path, context per sequence, load and last-use times of a loaded model."""
        if self.upstreams is not None and (pool := self.upstreams.pool(model_id)):
            return self.upstreams.info(pool)
        return self._runner(model_id).info()

    def count_tokens(self, text: str, model: str | None = None) -> int:
        """Tokens ``text`` takes as a completion prompt (with the model's BOS); for a model
        an upstream serves, a safe over-estimate."""
        if self.upstreams is not None and self.is_remote(model):
            return self.upstreams.count_tokens(text)
        with self._runner(model).using() as runner:
            return len(runner.tokenize_prompt(text, bounded=False))

    def interrupt(self, model_id: str | None = None) -> None:
        """Stop running and waiting generations (of one model, or all); they raise
        :class:`GenerationInterrupted`. A model an upstream serves: its streams close."""
        if self.upstreams is not None:
            self.upstreams.interrupt(model_id)
            if self.is_remote(model_id):
                return
        if model_id is not None:
            runners = [self._runner(model_id)]
        else:
            with self._lock:
                runners = list(self._runners.values())
        for runner in runners:
            runner.scheduler.interrupt()

    def runtime_stats(self, model_id: str | None = None) -> RuntimeStats:
        """Prefill/decode speed and TTFT of the last request, memory, queue lengths."""
        runner = self._runner(model_id)
        st = runner.scheduler.stats
        return RuntimeStats(
            model=runner.id,
            prefill_tokens_per_s=st.last_prefill_tokens_per_s,
            decode_tokens_per_s=st.last_decode_tokens_per_s,
            ttft_s=st.last_ttft_s,
            memory_bytes=int(psutil.Process().memory_info().rss),
            model_bytes=runner.model.size_bytes,
            kv_cache_bytes=runner.ctx.kv_bytes,
            requests_running=st.running,
            requests_waiting=st.waiting,
            n_parallel=runner.ctx.n_parallel,
            n_ctx=runner.ctx.n_ctx_seq,
            steps=st.steps,
            prompt_tokens_total=st.prompt_tokens_total,
            generated_tokens_total=st.generated_tokens_total,
            lookup_drafted=st.lookup_drafted,
            lookup_accepted=st.lookup_accepted,
            threads=st.threads,
        )

    def close(self) -> None:
        """Unload every model and restore llama.cpp's default logging."""
        with self._load_lock:
            self._finalizer()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ generation

    @overload
    def submit(self, request: ChatCompletionRequest, *, model: str | None = None
               ) -> ChatCompletion | Stream[ChatCompletionChunk]: ...

    @overload
    def submit(self, request: CompletionRequest, *, model: str | None = None
               ) -> Completion | Stream[Completion]: ...

    def submit(self, request: EngineRequest, *, model: str | None = None) -> Any:
        """The typed entry point beneath ``create``: run one parsed request.

        A stream when ``request.stream`` is true, else the whole response. ``model`` (a
        loaded id) overrides ``request.model``: the server passes the model it leased.
        ``keep_alive`` is the server's and is not read here.
        """
        if request.stream:
            events: queue.SimpleQueue[Any] = queue.SimpleQueue()
            handle, assembler = self._enqueue(request, events.put, model)
            return Stream(handle, events, assembler)
        done = threading.Event()
        sink = BufferedSink(done.set)
        handle, assembler = self._enqueue(request, sink, model)
        return collect(handle, sink, done, assembler)

    def _enqueue(self, req: EngineRequest, sink: Sink, model: str | None
                 ) -> tuple[Cancellable, Assembler[Any]]:
        """Template, tokenize and queue ``req`` (or send it to its upstream); the handle
        that cancels it, and what assembles its events. CPU work, so async callers run it
        in a worker thread."""
        if isinstance(req, ChatCompletionRequest):
            return self._enqueue_chat(req, sink, model)
        return self._enqueue_completion(req, sink, model)

    def _enqueue_chat(self, req: ChatCompletionRequest, sink: Sink, model: str | None
                      ) -> tuple[Cancellable, ChatAssembler]:
        sp = req.to_sampling_params()
        if self.upstreams is not None and (pool := self.upstreams.pool(model or req.model)):
            from localloom.engine.tools.output import OutputSpec

            call = self.upstreams.submit(pool, "chat", _remote_params(req), sp.n, sink)
            meta = ResponseMeta.new("chatcmpl", pool.model, sp.n, req.include_usage)
            return call, ChatAssembler(meta, logprobs=sp.logprobs,
                                       output=OutputSpec(reasoning=None))
        with self._runner(model or req.model).using() as runner:
            prompt = runner.chat_prompt(req)
            if prompt.grammar is not None:  # a forced tool call outranks response_format
                sp = dataclasses.replace(sp, grammar=prompt.grammar)
            greq = runner.make_request(prompt.tokens, sp, sink, extra_stops=prompt.stops,
                                       lstrip=prompt.lstrip)
            scheduler: Scheduler = runner.scheduler
            ticket = scheduler.submit(greq)
        meta = ResponseMeta.new("chatcmpl", runner.id, sp.n, req.include_usage)
        return ticket, ChatAssembler(meta, logprobs=sp.logprobs, output=prompt.output)

    def _enqueue_completion(self, req: CompletionRequest, sink: Sink, model: str | None
                            ) -> tuple[Cancellable, CompletionAssembler]:
        sp = req.to_sampling_params()
        if self.upstreams is not None and (pool := self.upstreams.pool(model or req.model)):
            call = self.upstreams.submit(pool, "completion", _remote_params(req), sp.n, sink)
            meta = ResponseMeta.new("cmpl", pool.model, sp.n, req.include_usage)
            return call, CompletionAssembler(meta, logprobs=sp.logprobs)
        with self._runner(model or req.model).using() as runner:
            tokens = runner.tokenize_prompt(req.prompt_text)
            greq = runner.make_request(tokens, sp, sink, prompt_param="prompt")
            scheduler: Scheduler = runner.scheduler
            ticket = scheduler.submit(greq)
        meta = ResponseMeta.new("cmpl", runner.id, sp.n, req.include_usage)
        return ticket, CompletionAssembler(meta, logprobs=sp.logprobs)


def chat_request(messages: Sequence[MessageInput], stream: bool,
                 params: Mapping[str, Any]) -> ChatCompletionRequest:
    """The typed request for ``chat.completions.create``'s keyword arguments."""
    _check_kwargs(params)
    return ChatCompletionRequest.parse({**params, "messages": list(messages), "stream": stream})


def completion_request(prompt: str | list[str], stream: bool,
                       params: Mapping[str, Any]) -> CompletionRequest:
    """The typed request for ``completions.create``'s keyword arguments."""
    _check_kwargs(params)
    return CompletionRequest.parse({**params, "prompt": prompt, "stream": stream})


class ChatCompletions:
    """``engine.chat.completions``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @overload
    def create(self, *, messages: Sequence[MessageInput], stream: Literal[False] = False,
               **params: Unpack[ChatParams]) -> ChatCompletion: ...

    @overload
    def create(self, *, messages: Sequence[MessageInput], stream: Literal[True],
               **params: Unpack[ChatParams]) -> Stream[ChatCompletionChunk]: ...

    def create(self, *, messages: Sequence[MessageInput], stream: bool = False,
               **params: Unpack[ChatParams]) -> ChatCompletion | Stream[ChatCompletionChunk]:
        """Generate a chat answer; ``stream=True`` returns an iterator of chunks.

        Parameters follow OpenAI's Chat Completions API (see :class:`ChatParams`).
        """
        return self._engine.submit(chat_request(messages, stream, params))


class Chat:
    """``engine.chat``."""

    def __init__(self, engine: Engine) -> None:
        self.completions = ChatCompletions(engine)


class Completions:
    """``engine.completions``: plain text continuation of a prompt."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @overload
    def create(self, *, prompt: str | list[str], stream: Literal[False] = False,
               **params: Unpack[CompletionParams]) -> Completion: ...

    @overload
    def create(self, *, prompt: str | list[str], stream: Literal[True],
               **params: Unpack[CompletionParams]) -> Stream[Completion]: ...

    def create(self, *, prompt: str | list[str], stream: bool = False,
               **params: Unpack[CompletionParams]) -> Completion | Stream[Completion]:
        """Continue ``prompt``; ``stream=True`` returns an iterator of Completion pieces."""
        return self._engine.submit(completion_request(prompt, stream, params))


# ------------------------------------------------------------------------ async


class AsyncEngine:
    """The same surface as :class:`Engine`, asyncio-native.

    Example::

        engine = AsyncEngine()
        await engine.reload("starter")
        stream = await engine.chat.completions.create(messages=msgs, stream=True)
        async for chunk in stream:
            ...
    """

    def __init__(self, settings: Settings | None = None, *, catalog: Catalog | None = None,
                 store: ModelStore | None = None, verbose: bool = False,
                 upstream: Sequence[UpstreamConfig | str] = ()) -> None:
        self.engine = Engine(settings, catalog=catalog, store=store, verbose=verbose,
                             upstream=upstream)
        self.chat = AsyncChat(self)
        self.completions = AsyncCompletions(self)
        self.embeddings = AsyncEmbeddings(self)

    async def reload(self, model_id: str | Sequence[str],
                     progress_callback: ProgressFn | None = None) -> None:
        """See :meth:`Engine.reload`; runs in a worker thread."""
        await asyncio.to_thread(self.engine.reload, model_id, progress_callback)

    async def load(self, model_id: str, progress_callback: ProgressFn | None = None) -> None:
        """See :meth:`Engine.load`."""
        await asyncio.to_thread(self.engine.load, model_id, progress_callback)

    async def unload(self, model_id: str | None = None) -> None:
        """See :meth:`Engine.unload`."""
        await asyncio.to_thread(self.engine.unload, model_id)

    @property
    def loaded_model(self) -> str | None:
        """The most recently loaded model id, or None."""
        return self.engine.loaded_model

    @property
    def loaded_models(self) -> list[str]:
        """Every loaded model id, oldest first."""
        return self.engine.loaded_models

    def is_remote(self, model_id: str | None) -> bool:
        """See :meth:`Engine.is_remote`."""
        return self.engine.is_remote(model_id)

    def remote_models(self) -> dict[str, list[str]]:
        """See :meth:`Engine.remote_models`."""
        return self.engine.remote_models()

    async def interrupt(self, model_id: str | None = None) -> None:
        """See :meth:`Engine.interrupt`."""
        self.engine.interrupt(model_id)

    async def runtime_stats(self, model_id: str | None = None) -> RuntimeStats:
        """See :meth:`Engine.runtime_stats`."""
        return self.engine.runtime_stats(model_id)

    async def model_info(self, model_id: str | None = None) -> LoadedModelInfo:
        """See :meth:`Engine.model_info`."""
        return self.engine.model_info(model_id)

    async def count_tokens(self, text: str, model: str | None = None) -> int:
        """See :meth:`Engine.count_tokens`."""
        return self.engine.count_tokens(text, model)

    async def close(self) -> None:
        """See :meth:`Engine.close`."""
        await asyncio.to_thread(self.engine.close)

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @overload
    async def submit(self, request: ChatCompletionRequest, *, model: str | None = None
                     ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...

    @overload
    async def submit(self, request: CompletionRequest, *, model: str | None = None
                     ) -> Completion | AsyncStream[Completion]: ...

    async def submit(self, request: EngineRequest, *, model: str | None = None) -> Any:
        """See :meth:`Engine.submit`; a stream is an async iterator. The chat template
        (up to its 2 s bound), tokenizing and grammar compiling run in a worker thread."""
        reply = _Reply(request.stream)

        def enqueue() -> _Prepared:
            return self.engine._enqueue(request, reply.sink, model)

        return await reply.take(await _off_loop(enqueue))

    async def _keyword(self, stream: bool, build: Callable[[], EngineRequest]) -> Any:
        """The keyword API (``chat.completions.create`` and ``completions.create``): the
        request is parsed in the worker thread too, as a long chat takes time."""
        reply, engine = _Reply(stream), self.engine

        def enqueue() -> _Prepared:
            return engine._enqueue(build(), reply.sink, None)

        return await reply.take(await _off_loop(enqueue))


_Prepared = tuple[Cancellable, Assembler[Any]]


class _Reply:
    """Where one async request's events arrive: the sink the scheduler thread calls, and
    what the caller gets back (a stream, or the response once collected)."""

    def __init__(self, stream: bool) -> None:
        loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.done: asyncio.Future[None] = loop.create_future()
        self.sink: Sink = (async_sink(loop, self.events) if stream else BufferedSink(
            lambda: loop.call_soon_threadsafe(resolve_future, self.done)))

    async def take(self, prepared: _Prepared) -> Any:
        """The stream of the queued request, or its whole response once it ended."""
        handle, assembler = prepared
        sink = self.sink
        if isinstance(sink, async_sink):
            sink.request = handle
            return AsyncStream(handle, self.events, assembler)
        assert isinstance(sink, BufferedSink)
        return await acollect(handle, sink, self.done, assembler)


async def _off_loop(prepare: Callable[[], _Prepared]) -> _Prepared:
    """Prepare a request in a worker thread: parsing, the chat template (up to its 2 s
    bound), tokenizing and grammar compiling must not stop the event loop. A caller that
    gives up meanwhile cancels the request as soon as it exists."""
    future = asyncio.get_running_loop().run_in_executor(None, prepare)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        def cancel_when_ready(done: asyncio.Future[_Prepared]) -> None:
            if not done.cancelled() and done.exception() is None:
                done.result()[0].cancel()

        future.add_done_callback(cancel_when_ready)
        raise


class AsyncChatCompletions:
    """``async_engine.chat.completions``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @overload
    async def create(self, *, messages: Sequence[MessageInput], stream: Literal[False] = False,
                     **params: Unpack[ChatParams]) -> ChatCompletion: ...

    @overload
    async def create(self, *, messages: Sequence[MessageInput], stream: Literal[True],
                     **params: Unpack[ChatParams]) -> AsyncStream[ChatCompletionChunk]: ...

    async def create(self, *, messages: Sequence[MessageInput], stream: bool = False,
                     **params: Unpack[ChatParams]
                     ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """See :meth:`ChatCompletions.create`; a stream is an async iterator."""
        result: ChatCompletion | AsyncStream[ChatCompletionChunk] = await self._engine._keyword(
            stream, lambda: chat_request(messages, stream, params))
        return result


class AsyncChat:
    """``async_engine.chat``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.completions = AsyncChatCompletions(engine)


class AsyncCompletions:
    """``async_engine.completions``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @overload
    async def create(self, *, prompt: str | list[str], stream: Literal[False] = False,
                     **params: Unpack[CompletionParams]) -> Completion: ...

    @overload
    async def create(self, *, prompt: str | list[str], stream: Literal[True],
                     **params: Unpack[CompletionParams]) -> AsyncStream[Completion]: ...

    async def create(self, *, prompt: str | list[str], stream: bool = False,
                     **params: Unpack[CompletionParams]
                     ) -> Completion | AsyncStream[Completion]:
        """See :meth:`Completions.create`."""
        result: Completion | AsyncStream[Completion] = await self._engine._keyword(
            stream, lambda: completion_request(prompt, stream, params))
        return result
