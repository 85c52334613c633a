"""`TaskRunner`: run a task on a text with an engine, streaming, chunking, saving.

Text longer than the model's context is never cut silently: it is split into parts that
fit (token-aware). ``summarize`` then summarizes each part and summarizes the summaries
(again, level by level, while they do not fit); other tasks answer part by part. Every
model call is recorded with its token counts in :attr:`TaskResult.calls`.

Example::

    runner = TaskRunner(engine, settings=settings)
    result = runner.run("summarize", text, model="starter",
                        options={"type": "key-points", "length": "short"},
                        on_text=lambda s: print(s, end=""),
                        on_progress=lambda done, total, msg: None)
    for event in runner.stream("question", text):   # TextDelta | Progress | TaskResult
        ...
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol

from localloom.catalog.builtin import STARTER_ID
from localloom.catalog.entry import PromptStyle
from localloom.config import Settings
from localloom.errors import InvalidRequestError, ModelNotLoadedError, TaskError
from localloom.history import HistoryStore, SavedResult
from localloom.tasks.cancel import Cancellation
from localloom.tasks.checks import OutputShaper
from localloom.tasks.chunking import chunk_budget, chunk_text
from localloom.tasks.corrections import Correction, find_corrections
from localloom.tasks.definition import TaskDefinition
from localloom.tasks.events import Progress, TextDelta
from localloom.tasks.language import LanguageDetector, normalize_language
from localloom.tasks.options import OptionValue, resolve_options
from localloom.tasks.orchestration import Call, MapCalls, Split, orchestrate
from localloom.tasks.prompts import AnswerText, Prompt, PromptPlan
from localloom.tasks.registry import TaskRegistry

__all__ = ["EngineLike", "ModelCall", "Progress", "TaskEvent", "TaskResult", "TaskRunner",
           "TextDelta"]

# Sampled calls that come back empty are made again this many times, with the next seeds.
EMPTY_RETRIES = 2


class EngineLike(Protocol):
    """The parts of :class:`localloom.Engine` a runner uses."""

    @property
    def chat(self) -> Any: ...
    @property
    def completions(self) -> Any: ...
    @property
    def loaded_models(self) -> list[str]: ...
    @property
    def loaded_model(self) -> str | None: ...
    def load(self, model_id: str, progress_callback: Any = None) -> None: ...
    def model_info(self, model_id: str) -> Any: ...
    def count_tokens(self, text: str, model: str | None = None) -> int: ...


@dataclass(frozen=True)
class ModelCall:
    """One call to the model and its token counts (prompt + max_tokens <= n_ctx)."""

    stage: str  # "single", "chunk", "map", "reduce"
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int
    n_ctx: int
    duration_ms: float
    finish_reason: str | None


@dataclass
class TaskResult:
    """A finished task: the answer and how it was made."""

    task: str
    model: str
    text: str
    original: str
    language: str
    source_language: str
    parameters: dict[str, Any]
    source: str | None = None
    chunks: int = 1
    calls: list[ModelCall] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    saved_id: str | None = None
    options: dict[str, OptionValue] = field(default_factory=dict)
    # proofread: each change from `original`, with its position there
    corrections: list[Correction] | None = None

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens over every call."""
        return sum(c.prompt_tokens for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        """Generated tokens over every call."""
        return sum(c.completion_tokens for c in self.calls)

    @property
    def usage(self) -> dict[str, int]:
        """OpenAI-style token usage over every call."""
        prompt, completion = self.prompt_tokens, self.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}


TaskEvent = TextDelta | Progress | TaskResult
_Steps = Generator[TextDelta | Progress, None, str]


@dataclass(frozen=True)
class _Choice:
    """What the caller chose besides the task and the model (options not yet checked)."""

    lang: str | None
    to: str | None
    options: Mapping[str, object] | None
    context: str | None


@dataclass
class _Job:
    task: TaskDefinition
    model: str
    n_ctx: int
    plan: PromptPlan
    sampling: dict[str, Any]
    budget: int
    parallel: int = 1  # sequences the engine decodes together
    calls: list[ModelCall] = field(default_factory=list)
    chunks: int = 1  # parts the input was split into
    cancel: Cancellation = field(default_factory=Cancellation)


def take_chunk(chunk: Any, chat: bool, answer: AnswerText, shaper: OutputShaper,
               finish: str | None) -> tuple[str, str | None]:
    """Feed one engine chunk through the stop strings and the options' limits.

    Returns the text now safe to show and the finish reason seen so far; the sync and the
    async runner share it so both cut answers the same way.
    """
    shown = ""
    for choice in chunk.choices:
        finish = choice.finish_reason or finish
        piece = (choice.delta.content if chat else choice.text) or ""
        shown += shaper.feed(answer.feed(piece))
    return shown, finish


class TaskRunner:
    """Runs registered tasks on an engine; optionally saves results to a history store."""

    def __init__(self, engine: EngineLike,
                 history: HistoryStore | Callable[[], HistoryStore] | None = None,
                 settings: Settings | None = None, *, registry: TaskRegistry | None = None,
                 detector: LanguageDetector | None = None) -> None:
        self.engine = engine
        self.settings = settings or Settings()
        self.registry = registry or TaskRegistry.default(self.settings)
        self._history = history
        self._template_cache: dict[str, int] = {}
        self.detector = detector or LanguageDetector()

    @property
    def history(self) -> HistoryStore:
        """The history store results are saved to: the one given (a callable: asked on each
        save, so the server's one store is opened lazily, once), else the user's, opened on
        first use."""
        if self._history is None:
            self._history = HistoryStore.for_settings(self.settings)
        if isinstance(self._history, HistoryStore):
            return self._history
        return self._history()

    def run(self, task: str, text: str, *, model: str | None = None, lang: str | None = None,
            to: str | None = None, quick: bool = False, save: bool = False,
            source: str | None = None, options: Mapping[str, object] | None = None,
            context: str | None = None, on_text: Callable[[str], None] | None = None,
            on_progress: Callable[[int, int, str], None] | None = None,
            cancel: Cancellation | None = None, **sampling: Any) -> TaskResult:
        """Run `task` on `text` and return the result; `on_text` gets the answer as it
        streams, `on_progress` gets (done, total, message) for long texts; `cancel` stops
        it from another thread (GenerationInterrupted).

        `options` are the task's options (``{"type": "headline"}``; InvalidRequestError
        names the allowed values); `context` is background the prompt gives the model.
        `sampling` may override temperature, top_p, max_tokens or seed.
        """
        for event in self.stream(task, text, model=model, lang=lang, to=to, quick=quick,
                                 save=save, source=source, options=options, context=context,
                                 cancel=cancel, **sampling):
            if isinstance(event, TextDelta):
                if on_text is not None:
                    on_text(event.text)
            elif isinstance(event, Progress):
                if on_progress is not None:
                    on_progress(event.done, event.total, event.text)
            else:
                return event
        raise TaskError("The task ended without a result.")  # pragma: no cover

    def stream(self, task: str, text: str, *, model: str | None = None,
               lang: str | None = None, to: str | None = None, quick: bool = False,
               save: bool = False, source: str | None = None,
               options: Mapping[str, object] | None = None, context: str | None = None,
               cancel: Cancellation | None = None, **sampling: Any) -> Iterator[TaskEvent]:
        """Like :meth:`run`, as events: TextDelta and Progress, then one TaskResult.

        Closing the iterator early, or ``cancel.cancel()`` from another thread, stops every
        model call of the task at once."""
        started = time.perf_counter()
        if not text.strip():
            raise TaskError("There is no text to work on. Pass some text, a --file, a --url, "
                            "or pipe text into `-`.")
        job = self._prepare(task, text, model, _Choice(lang, to, options, context), quick,
                            sampling)
        if cancel is not None:
            job.cancel = cancel
        first: list[float] = []
        steps = self._drive(job, text)
        parts: list[str] = []
        try:
            for event in steps:
                if isinstance(event, TextDelta):
                    if not first:
                        first.append(time.perf_counter())
                    parts.append(event.text)
                yield event
        except BaseException:  # closed early or failed: the other calls stop too
            job.cancel.cancel()
            raise
        timings = {"total_ms": round((time.perf_counter() - started) * 1000, 3)}
        if first:
            timings["first_token_ms"] = round((first[0] - started) * 1000, 3)
        result = self._result(job, text, "".join(parts).strip(), source, quick, timings)
        if save:
            result.saved_id = self.save(result).id
        yield result

    def save(self, result: TaskResult) -> SavedResult:
        """Store a result in the history; returns the saved record."""
        return self.history.save(SavedResult(
            task=result.task, model=result.model, original=result.original,
            result=result.text, parameters=result.parameters, source=result.source,
            language=result.language, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, timings=result.timings,
        ))

    # -- preparation --------------------------------------------------------------------

    def _model(self, model: str | None) -> tuple[str, PromptStyle, int, int]:
        """The loaded model's id, prompt style and per-sequence context (loading it if
        needed: a catalog id, an alias or a GGUF path)."""
        wanted = model or self.engine.loaded_model or STARTER_ID
        try:
            info = self.engine.model_info(wanted)
        except ModelNotLoadedError:
            self.engine.load(wanted)
            info = self.engine.model_info(wanted)
        style: PromptStyle = "completion" if info.prompt_style == "completion" else "chat"
        return str(info.id), style, int(info.n_ctx), int(getattr(info, "n_parallel", 1))

    def _plan(self, definition: TaskDefinition, style: PromptStyle, text: str,
              choice: _Choice, options: dict[str, OptionValue]) -> PromptPlan:
        lang, to = choice.lang, choice.to
        stated = str(options.get("from", "auto"))  # translate's --from; else detected
        source_language = (normalize_language(stated) if stated.lower() != "auto"
                           else self.detector.detect(text))
        target = normalize_language(to) if to else None
        if definition.needs_target and not target:
            raise TaskError(f"Task '{definition.name}' needs a target language: pass to='es' "
                            "(on the command line: --to es).")
        answer = target if definition.needs_target and target else (
            normalize_language(lang) if lang else source_language)
        return PromptPlan(task=definition, style=style, answer_language=answer,
                          source_language=source_language, target_language=target,
                          options=options, context=(choice.context or "").strip() or None)

    def _prepare(self, task: str, text: str, model: str | None, choice: _Choice,
                 quick: bool, overrides: dict[str, Any]) -> _Job:
        definition = self.registry.get(task)
        unknown = set(overrides) - {"temperature", "top_p", "max_tokens", "seed"}
        if unknown:
            raise TaskError(f"Unknown setting(s) {sorted(unknown)}; a task accepts "
                            "temperature, top_p, max_tokens and seed.")
        options = resolve_options(definition, choice.options)  # fails before any loading
        model_id, style, n_ctx, parallel = self._model(model)
        plan = self._plan(definition, style, text, choice, options)
        sampling: dict[str, Any] = {
            "temperature": definition.temperature, "top_p": definition.top_p,
            "max_tokens": definition.max_tokens_for(quick),
        }
        sampling.update({k: v for k, v in overrides.items() if v is not None})
        max_tokens = sampling["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidRequestError(f"max_tokens must be a whole number of at least 1 (got "
                                      f"{max_tokens!r}).", param="max_tokens")
        count = self._counter(model_id)
        template = self.chat_template_tokens(model_id) if style == "chat" else 0
        budget = chunk_budget(n_ctx, plan.overhead_tokens(count, template),
                              int(sampling["max_tokens"]))
        return _Job(task=definition, model=model_id, n_ctx=n_ctx, plan=plan,
                    sampling=sampling, budget=budget, parallel=parallel)

    def chat_template_tokens(self, model_id: str) -> int:
        """Tokens the model's chat template adds around one user message.

        Templates differ a lot (role markers, default system prompts, dates), so this is
        measured once per model with a one-token request rather than guessed.
        """
        if model_id not in self._template_cache:
            probe = "Hello."
            reply = self.engine.chat.completions.create(
                messages=[{"role": "user", "content": probe}], model=model_id, max_tokens=1,
                temperature=0.0)
            measured = int(reply.usage.prompt_tokens) - self.engine.count_tokens(
                probe, model=model_id)
            self._template_cache[model_id] = max(0, measured)
        return self._template_cache[model_id]

    def _counter(self, model_id: str) -> Callable[[str], int]:
        return lambda s: self.engine.count_tokens(s, model=model_id)

    def _result(self, job: _Job, text: str, answer: str, source: str | None, quick: bool,
                timings: dict[str, float]) -> TaskResult:
        params = {**job.sampling, "quick": quick, "prompt_style": job.plan.style,
                  "language": job.plan.answer_language}
        if job.plan.target_language:
            params["to"] = job.plan.target_language
        options = dict(job.plan.options)
        if options:
            params["options"] = options
        if job.plan.context:
            params["context"] = job.plan.context
        corrections = find_corrections(text, answer) if job.task.reports_corrections else None
        return TaskResult(
            task=job.task.name, model=job.model, text=answer, original=text,
            language=job.plan.answer_language, source_language=job.plan.source_language,
            parameters=params, source=source, chunks=job.chunks, calls=list(job.calls),
            timings=timings, options=options, corrections=corrections,
        )

    # -- the model calls ----------------------------------------------------------------

    def _chunks(self, job: _Job, text: str) -> list[str]:
        count = self._counter(job.model)
        if count(text) <= job.budget:
            return [text.strip()]
        return chunk_text(text, job.budget, count)

    def _call(self, job: _Job, text: str, stage: str, *, stream: bool) -> _Steps:
        """One model call on `text`; yields its text as TextDelta when `stream`.

        A sampled call whose answer is empty (the model ended at once: small models do,
        now and then) is made again with the next seeds, up to EMPTY_RETRIES times; an
        empty answer has shown nothing yet, so the retry is invisible but for the calls.
        """
        answer = ""
        seed = job.sampling.get("seed")
        retries = EMPTY_RETRIES if float(job.sampling.get("temperature", 0)) > 0 else 0
        for attempt in range(retries + 1):
            if attempt and seed is None:
                seed = random.randrange(1 << 31)
            sampling = {**job.sampling, "seed": None if seed is None else seed + attempt}
            answer = yield from self._call_once(job, text, stage, stream, sampling)
            if answer:
                break
        return answer

    def _call_once(self, job: _Job, text: str, stage: str, stream: bool,
                   sampling: dict[str, Any]) -> _Steps:
        job.cancel.check()
        prompt = job.plan.build(text)
        cap = prompt.rules.token_cap()  # the options' limits need no more than this
        max_tokens = min(int(sampling["max_tokens"]), cap or int(sampling["max_tokens"]))
        sampling = {**sampling, "max_tokens": max_tokens}
        started = time.perf_counter()
        kwargs = {"model": job.model, "stream": True, "stream_options": {"include_usage": True},
                  "prompt_lookup": job.task.prompt_lookup, **sampling}
        if prompt.messages is not None:
            chunks = self.engine.chat.completions.create(messages=prompt.messages, **kwargs)
        else:
            chunks = self.engine.completions.create(prompt=prompt.text, **kwargs)
        answer = AnswerText(prompt.stop)
        shaper = OutputShaper(prompt.rules)  # holds the answer to the options' limits
        usage: Any = None
        finish: str | None = None
        try:
            with job.cancel.track(chunks):
                for chunk in chunks:
                    usage = chunk.usage or usage
                    shown, finish = take_chunk(chunk, prompt.messages is not None, answer,
                                               shaper, finish)
                    if shown and stream:
                        yield TextDelta(shown)
                    if answer.stopped or shaper.full:
                        finish = "stop"
                        break
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()  # stops the generation at once if we left early
        rest = shaper.feed(answer.finish()) + shaper.finish()
        if rest and stream:
            yield TextDelta(rest)
        job.calls.append(self._record(job, prompt, shaper.text, usage, stage, max_tokens,
                                      finish, started))
        return shaper.text

    def _record(self, job: _Job, prompt: Prompt, answer: str, usage: Any, stage: str,
                max_tokens: int, finish: str | None, started: float) -> ModelCall:
        count = self._counter(job.model)
        prompt_tokens = usage.prompt_tokens if usage is not None else count(prompt.countable())
        # Without usage (a stop string ended the stream early) count the answer ourselves,
        # less the BOS token that counting a prompt adds. Retokenizing the shaped answer
        # (bullets and spaces rewritten) can count more than were generated: never more
        # than the call may have made.
        completion_tokens = (usage.completion_tokens if usage is not None
                             else min(max_tokens, max(0, count(answer) - count(""))))
        return ModelCall(stage=stage, prompt_tokens=int(prompt_tokens),
                         completion_tokens=int(completion_tokens), max_tokens=max_tokens,
                         n_ctx=job.n_ctx, duration_ms=(time.perf_counter() - started) * 1000,
                         finish_reason=finish)

    def _drive(self, job: _Job, text: str) -> _Steps:
        """Run the task's calls in the order :func:`orchestrate` gives, passing its events
        on."""
        plan = orchestrate(job, text)
        answer: Any = None
        while True:
            try:
                step = plan.send(answer)
            except StopIteration:
                return ""
            answer = None
            if isinstance(step, Split):
                answer = self._chunks(job, step.text)
            elif isinstance(step, Call):
                yield from self._call(job, step.text, step.stage, stream=True)
            elif isinstance(step, MapCalls):
                answer = yield from self._map(job, step)
            else:
                yield step

    def _complete(self, job: _Job, text: str, stage: str) -> str:
        """One model call, not streamed (for worker threads)."""
        steps = self._call(job, text, stage, stream=False)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return str(stop.value)

    def _map(self, job: _Job, step: MapCalls) -> Generator[Progress, None, list[str]]:
        """Summarize every part, several at once (the engine batches parallel sequences)."""
        parts = step.parts
        results = [""] * len(parts)
        pool = ThreadPoolExecutor(max_workers=max(1, min(job.parallel, len(parts))),
                                  thread_name_prefix="localloom-map")
        try:
            futures = {pool.submit(self._complete, job, part, "map"): i
                       for i, part in enumerate(parts)}
            for finished, future in enumerate(as_completed(futures), start=1):
                index = futures[future]
                results[index] = future.result().strip()
                yield step.progress(finished, index)
        except BaseException:  # the consumer left or a call failed: stop the running calls
            job.cancel.cancel()  # too, so that the shutdown below does not wait for them
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return [r for r in results if r]
