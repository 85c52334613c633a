"""One loaded model: weights, context, chat format and its scheduler thread.

The :class:`ModelRunner` turns a validated request into prompt tokens and a
:class:`GenerationRequest` (rendering and tokenizing on the caller's thread, so errors
come back synchronously), then hands it to the scheduler.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp

from localloom.config import Settings
from localloom.engine.embedder import Embedder
from localloom.engine.grammar import GrammarChecker
from localloom.engine.outbox import Sink
from localloom.engine.params import SamplingParams
from localloom.engine.probe import probe_model
from localloom.engine.protocol import ChatCompletionRequest
from localloom.engine.runtime import (
    LlamaContext,
    LlamaModel,
    LoadOptions,
    build_sampler,
    check_file,
    free_sampler,
)
from localloom.engine.scheduler import Scheduler
from localloom.engine.task import GenerationRequest
from localloom.engine.templates import ChatFormat
from localloom.engine.threads import ThreadGovernor
from localloom.engine.tools import ChatStyle, OutputSpec, plan_chat
from localloom.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotLoadedError,
    TemplateError,
)

if TYPE_CHECKING:
    from localloom.catalog.entry import ModelEntry

__all__ = ["ChatPrompt", "LoadedModelInfo", "ModelRunner"]

_LONGEST_GUESS = 16  # bytes per token below which no vocabulary scan is needed to judge
_COUNT_FIRST = 32_768  # characters from which a prompt is counted in chunks first
_COUNT_SLACK = 64


@dataclass(frozen=True)
class LoadedModelInfo:
    """What is loaded: id, file, context per sequence, parallel sequences, times."""

    id: str
    path: Path
    n_ctx: int
    n_parallel: int
    size_bytes: int
    prompt_style: str
    loaded_at: float
    last_used: float
    backend: str = "default"  # the backend config in use (see localloom.engine.backend)
    fallback: bool = False  # a safer config than llama.cpp's default, after a failed trial


@dataclass(frozen=True)
class ChatPrompt:
    """A chat request made ready to run: its tokens, the format's stop strings, whether the
    answer's leading space goes, the grammar that forces a tool call (if one is forced),
    and how to split the output into reasoning, text and calls."""

    tokens: list[int]
    stops: tuple[str, ...]
    lstrip: bool
    grammar: str | None
    output: OutputSpec


class ModelRunner:
    """A loaded model with its own scheduler thread."""

    def __init__(self, model_id: str, path: Path, entry: ModelEntry | None,
                 settings: Settings, progress: Callable[[float], None] | None = None) -> None:
        self.id = model_id
        self.entry = entry
        options = LoadOptions.from_settings(settings)
        # Header check + trial loads in a child process: a file or backend that crashes
        # llama.cpp kills that throwaway process, not this one, and the load uses the first
        # backend config that ran (verdicts are cached per file, build and machine).
        check_file(path)
        self.probe = probe_model(path, settings=settings, threads=options.n_threads,
                                 gpu_layers=options.n_gpu_layers)
        options = dataclasses.replace(options, backend=self.probe.config)
        self.model = LlamaModel(path, options, progress)
        try:
            self.ctx = LlamaContext(self.model, options)
        except BaseException:
            self.model.close()
            raise
        self.format, self._format_error = self._chat_format()
        self.style = ChatStyle.from_template(self.format.template, self.format.variables,
                                             self.model.meta("general.architecture"))
        # Each new response_format grammar compiles first in a child holding the vocabulary:
        # a grammar that crashes, hangs or is too slow to sample is refused there.
        self.grammars = GrammarChecker(path)
        # On a GPU the CPU threads barely matter; on a CPU fewer threads win while other
        # processes keep cores busy (see engine/threads.py).
        on_cpu = (self.probe.config.gpu_layers == 0
                  or not llama_cpp.llama_supports_gpu_offload())
        governor = ThreadGovernor(options.n_threads,
                                  enabled=options.adaptive_threads and on_cpu)
        self.scheduler = Scheduler(self.model, self.ctx, max_queue=settings.max_queue,
                                   name=model_id, prefix_cache=settings.prefix_cache,
                                   lookup=settings.prompt_lookup, threads=governor)
        self.deterministic = settings.deterministic
        self.loaded_at = time.time()
        self.last_used = self.loaded_at
        self._users = 0
        self._closed = False
        self._users_cond = threading.Condition()
        # The embedding context is made on first use (most models never embed).
        self._embedder: Embedder | None = None
        self._embed_args = (options.n_threads, settings.max_default_ctx)
        self._embedder_lock = threading.Lock()

    @contextmanager
    def using(self) -> Iterator[ModelRunner]:
        """Hold the model open while a caller tokenizes and submits (unload waits)."""
        with self._users_cond:
            if self._closed:
                raise ModelNotLoadedError(f"Model '{self.id}' was just unloaded. Load it "
                                          "again (engine.load) and retry.")
            self._users += 1
        try:
            yield self
        finally:
            with self._users_cond:
                self._users -= 1
                self._users_cond.notify_all()

    def embedder(self) -> Embedder:
        """This model's embedding context (made on first use; InvalidRequestError when
        the model cannot embed)."""
        with self._embedder_lock:
            if self._embedder is None:
                threads, max_ctx = self._embed_args
                self._embedder = Embedder.create(self.model, entry=self.entry,
                                                 model_id=self.id, n_threads=threads,
                                                 max_ctx=max_ctx)
            return self._embedder

    def _chat_format(self) -> tuple[ChatFormat, TemplateError | None]:
        entry = self.entry
        if entry is not None and entry.chat_template:
            template: str | None = entry.chat_template
        elif entry is not None and entry.prompt_style == "completion":
            template = None
        else:
            template = self.model.chat_template
        bos, eos = self.model.special_text(self.model.bos), self.model.special_text(self.model.eos)
        try:
            return ChatFormat.from_template(template, bos_token=bos, eos_token=eos), None
        except TemplateError as exc:  # completions still work; chat reports this
            return ChatFormat.from_template(None), exc

    def close(self) -> None:
        """Stop the scheduler (failing outstanding requests) and free llama.cpp memory."""
        with self._users_cond:
            self._closed = True
            while self._users:
                self._users_cond.wait()
        self.scheduler.close()
        self.grammars.close()
        if self._embedder is not None:
            self._embedder.close()
        self.ctx.close()
        self.model.close()

    def info(self) -> LoadedModelInfo:
        """A snapshot of this model's load facts."""
        style = "completion" if self.format.is_completion_style else "chat"
        return LoadedModelInfo(self.id, self.model.path, self.ctx.n_ctx_seq,
                               self.ctx.n_parallel, self.model.size_bytes, style,
                               self.loaded_at, self.last_used, self.probe.config.name,
                               self.probe.fallback)

    # ------------------------------------------------------------------ prompts

    def check_size(self, text_len: int, *, items: int = 0) -> None:
        """Refuse at once what cannot fit the context: more characters than n_ctx of the
        model's longest tokens, or more messages than n_ctx (each takes a token at least)."""
        n_ctx = self.ctx.n_ctx_seq
        if items > n_ctx:
            raise ContextLengthExceededError(items, n_ctx, at_least=True)
        if text_len > n_ctx * _LONGEST_GUESS and text_len > n_ctx * self.model.max_piece_bytes:
            raise ContextLengthExceededError(text_len // self.model.max_piece_bytes, n_ctx,
                                             at_least=True)

    def tokenize_prompt(self, text: str, *, bounded: bool = True) -> list[int]:
        """Tokens of a prompt, with the BOS the model wants (exactly once).

        ``bounded`` (a prompt to run): bounded in time, since a text that cannot fit the
        context is refused by its length, and a long one is counted in linear-time chunks
        before the exact (possibly quadratic) tokenization runs on a text known to fit.
        Unbounded: the exact tokens of any text (the task chunker counts whole documents)."""
        n_ctx = self.ctx.n_ctx_seq
        if bounded:
            self.check_size(len(text.encode("utf-8")))
        if bounded and len(text) > _COUNT_FIRST:
            counted = self.model.count_tokens_upto(text, n_ctx + _COUNT_SLACK)
            slack = _COUNT_SLACK + len(text) // 1000  # chunk seams change a token or two
            if counted > n_ctx + slack:
                raise ContextLengthExceededError(counted - slack, n_ctx, at_least=True)
        bos = self.format.bos_token
        if bos and text.startswith(bos) and llama_cpp.llama_vocab_get_add_bos(self.model.vocab):
            text = text[len(bos):]  # templates often write BOS; tokenizing adds it again
        return self.model.tokenize(text, add_special=True, parse_special=True)

    def chat_prompt(self, req: ChatCompletionRequest) -> ChatPrompt:
        """The tokens, stops, tool grammar and output spec of a chat request."""
        if self._format_error is not None:
            raise self._format_error
        plan = plan_chat(req, self.style)
        self.check_size(sum(len(m["content"].encode("utf-8")) for m in plan.messages)
                        + len(str(plan.variables.get("tools", ""))), items=len(plan.messages))
        text = self.format.render(plan.messages, add_generation_prompt=True, **plan.variables)
        # A prompt that ends by opening the thinking markers (Qwen3, DeepSeek-R1) has the
        # model start inside its reasoning.
        # (Not when a grammar forces a call: then the call is all it writes.)
        in_reasoning = plan.grammar is None and text.rstrip().endswith(
            self.style.reasoning.start)
        output = dataclasses.replace(plan.output, in_reasoning=in_reasoning)
        # A forced call ends where its grammar ends: a base model's turn-ending stops
        # ("\n\n") would only cut it short.
        stops = () if plan.grammar is not None else self.format.stops
        return ChatPrompt(self.tokenize_prompt(text), stops, self.format.is_completion_style,
                          plan.grammar, output)

    def make_request(self, prompt: list[int], params: SamplingParams, sink: Sink, *,
                     extra_stops: tuple[str, ...] = (), lstrip: bool = False,
                     prompt_param: str = "messages") -> GenerationRequest:
        """Check the context budget, build one sampler chain per choice."""
        n_ctx = self.ctx.n_ctx_seq
        if not prompt:
            raise InvalidRequestError("The prompt is empty; give some text.", param=prompt_param)
        if params.n > self.ctx.n_parallel:
            raise InvalidRequestError(
                f"'n' is {params.n}, but this model runs at most {self.ctx.n_parallel} "
                "sequences at once. Lower n or raise LOCALLOOM_N_PARALLEL.", param="n")
        if params.max_tokens is not None and len(prompt) + params.max_tokens > n_ctx:
            raise ContextLengthExceededError(len(prompt), n_ctx, params.max_tokens)
        if len(prompt) >= n_ctx:
            raise ContextLengthExceededError(len(prompt), n_ctx)
        max_tokens = params.max_tokens or n_ctx - len(prompt)
        if params.grammar is not None:
            self.grammars.check(params.grammar)
            _ = self.model.utf8_tables  # built once here, not on the scheduler thread
        seed = params.seed if params.seed is not None else secrets.randbits(32)
        samplers: list[Any] = []
        try:
            for i in range(params.n):
                samplers.append(build_sampler(self.model, params, seed + i))
        except BaseException:
            for s in samplers:
                free_sampler(s)
            raise
        self.last_used = time.time()
        stops = tuple(dict.fromkeys(params.stop + extra_stops))
        deterministic = (self.deterministic if params.deterministic is None
                         else params.deterministic)
        return GenerationRequest(prompt, params, samplers, max_tokens, stops, sink,
                                 lstrip=lstrip, lookup=params.prompt_lookup,
                                 deterministic=deterministic)
