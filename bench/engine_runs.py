"""Measurements of LocalLoom itself: the Engine in-process, and the CLI's warm start.

- single stream: prefill tokens/s (a fresh ``n_prompt``-token prompt, time to first token)
  and decode tokens/s (tokens after the first over the time between first and last);
- streams: N requests at once through ``AsyncEngine``; aggregate decode tokens/s over the
  window in which all N are decoding (what llama-batched-bench's S_TG measures);
- prefix reuse: time to first token of a second task on the same ~1,000-token text;
- warm start: ``localloom run MODEL "prompt" --max-tokens 1`` wall time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.models import ModelFile
from bench.texts import TokenCounter, document, sized_prompt

__all__ = [
    "PrefixReuse",
    "SingleStream",
    "StreamsPoint",
    "WarmStart",
    "engine_single_stream",
    "engine_streams",
    "gpu_memory_bytes",
    "prefix_reuse_ttft",
    "warm_start",
]


@dataclass(frozen=True)
class EngineOptions:
    """What every Engine the bench makes shares."""

    home: Path
    threads: int
    n_gpu_layers: int | None  # None: LocalLoom decides (all layers on a GPU build)


def _settings(opts: EngineOptions, n_parallel: int, n_ctx: int, **extra: Any) -> Any:
    from localloom.config import Settings

    return Settings(home=opts.home, n_threads=opts.threads, n_gpu_layers=opts.n_gpu_layers,
                    n_parallel=n_parallel, n_ctx=n_ctx, offline=True, **extra)


@contextmanager
def _engine(opts: EngineOptions, model: ModelFile, n_parallel: int, n_ctx: int,
            **extra: Any) -> Iterator[Any]:
    from localloom.engine import Engine

    engine = Engine(_settings(opts, n_parallel, n_ctx, **extra))
    try:
        engine.reload(model.model_id)
        yield engine
    finally:
        engine.close()


def _bias(model: ModelFile) -> dict[int, float]:
    return {model.eos_id: -100.0}


def _stream(engine: Any, model: ModelFile, prompt: str, max_tokens: int
            ) -> tuple[float, list[float], int, int]:
    """(start, times of chunks with text, prompt tokens, completion tokens)."""
    t0 = time.perf_counter()
    times: list[float] = []
    usage = None
    for chunk in engine.completions.create(prompt=prompt, max_tokens=max_tokens,
                                           temperature=0.0, logit_bias=_bias(model),
                                           stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter())
        if getattr(chunk, "usage", None) is not None:
            usage = chunk.usage
    prompt_tokens = int(usage.prompt_tokens) if usage else 0
    completion_tokens = int(usage.completion_tokens) if usage else len(times)
    return t0, times, prompt_tokens, completion_tokens


@dataclass(frozen=True)
class SingleStream:
    """LocalLoom Engine, one request at a time."""

    prefill_ts: float
    prefill_sd: float
    decode_ts: float
    decode_sd: float
    prompt_tokens: int
    decode_tokens: int
    reps: int
    reported_prefill_ts: float  # the engine's own runtime_stats(), for comparison
    reported_decode_ts: float
    host_rss_bytes: int = 0  # runtime_stats().memory_bytes: this process's resident memory
    gpu_bytes: int | None = None  # this process's GPU memory (nvidia-smi); None: no GPU


def gpu_memory_bytes(pid: int | None = None) -> int | None:
    """GPU memory this process holds, per nvidia-smi; None without a GPU or nvidia-smi."""
    pid = os.getpid() if pid is None else pid
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            return int(parts[1]) * 2**20
    return None


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def engine_single_stream(opts: EngineOptions, model: ModelFile, *, n_prompt: int, n_gen: int,
                         reps: int) -> SingleStream:
    """Prefill and decode rates of one stream, measured like llama-bench's pp/tg tests."""
    counter = TokenCounter(model.path)
    prompts = [sized_prompt(counter, n_prompt, seed=100 + i) for i in range(reps)]
    with _engine(opts, model, 1, n_prompt + n_gen + 64) as engine:
        _stream(engine, model, "Warm up: the first words are", 4)
        prefill, decode = [], []
        prompt_tokens = decode_tokens = 0
        for p in prompts:  # each prompt is new text: nothing can be reused from before
            t0, times, prompt_tokens, _ = _stream(engine, model, p, 1)
            prefill.append(prompt_tokens / (times[0] - t0))
        # runtime_stats() keeps the last request's prefill: read it while that is a prompt
        # of n_prompt tokens (the decode runs below start from 8-token prompts).
        reported_prefill = float(engine.runtime_stats().prefill_tokens_per_s)
        for i in range(reps):
            _, times, _, n = _stream(engine, model, f"Story {i}: once upon a time", n_gen + 1)
            decode_tokens = n - 1
            decode.append(decode_tokens / (times[-1] - times[0]))
        stats = engine.runtime_stats()
        gpu = gpu_memory_bytes() if opts.n_gpu_layers != 0 else None
    (pm, ps), (dm, ds) = _mean_sd(prefill), _mean_sd(decode)
    return SingleStream(pm, ps, dm, ds, prompt_tokens, decode_tokens, reps, reported_prefill,
                        float(stats.decode_tokens_per_s), int(stats.memory_bytes), gpu)


@dataclass(frozen=True)
class StreamsPoint:
    """N streams at once through AsyncEngine."""

    streams: int
    decode_ts: float  # aggregate while all N decode (llama-batched-bench's S_TG)
    end_to_end_ts: float  # all completion tokens over the whole wall time
    completion_tokens: int
    wall_s: float


async def _one_stream(engine: Any, model: ModelFile, prompt: str, max_tokens: int
                      ) -> list[float]:
    stream = await engine.completions.create(prompt=prompt, max_tokens=max_tokens,
                                             temperature=0.0, logit_bias=_bias(model),
                                             stream=True)
    times: list[float] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter())
    return times


def _window_rate(all_times: list[list[float]]) -> float:
    """Tokens per second over the span in which every stream was past its first token."""
    start = max(t[0] for t in all_times)
    end = min(t[-1] for t in all_times)
    if end <= start:
        return float("nan")
    n = sum(sum(1 for x in t if start < x <= end) for t in all_times)
    return n / (end - start)


async def _streams(opts: EngineOptions, model: ModelFile, levels: list[int], prompts: list[str],
                   n_ctx: int, n_tg: int) -> list[StreamsPoint]:
    from localloom.engine import AsyncEngine

    engine = AsyncEngine(_settings(opts, max(levels), n_ctx))
    points = []
    fresh = iter(prompts)  # every request gets new text: no level reuses another's prompts
    try:
        await engine.reload(model.model_id)
        await _one_stream(engine, model, "Warm up: the first words are", 4)
        for n in levels:
            batch = [next(fresh) for _ in range(n)]
            t0 = time.perf_counter()
            results = await asyncio.gather(*(_one_stream(engine, model, p, n_tg) for p in batch))
            wall = time.perf_counter() - t0
            total = sum(len(t) for t in results)
            points.append(StreamsPoint(n, _window_rate(results), total / wall, total, wall))
    finally:
        await engine.close()
    return points


def engine_streams(opts: EngineOptions, model: ModelFile, *, levels: list[int], n_pp: int,
                   n_tg: int) -> list[StreamsPoint]:
    """Aggregate decode rate with 1..N streams in flight (one Engine, n_parallel = max N)."""
    counter = TokenCounter(model.path)
    prompts = [sized_prompt(counter, n_pp, seed=500 + i) for i in range(sum(levels))]
    return asyncio.run(_streams(opts, model, levels, prompts, n_pp + n_tg + 64, n_tg))


@dataclass(frozen=True)
class PrefixReuse:
    """TTFT of a second task on the same text: cold (nothing cached) and with reuse."""

    doc_tokens: int
    cold_ttft_s: float
    reuse_ttft_s: float
    cold_method: str
    reps: int


def _task(doc: str, task: str) -> str:
    return f"Text:\n{doc}\n\nTask: {task}\nAnswer:"


def _prefix_switch() -> str | None:
    """The Settings field that turns prefix reuse off, if LocalLoom has one."""
    from localloom.config import Settings

    names = [n for n, f in Settings.model_fields.items()
             if ("prefix" in n or "prompt_cache" in n) and f.annotation in (bool, bool | None)]
    return names[0] if names else None


def prefix_reuse_ttft(opts: EngineOptions, model: ModelFile, *, doc_tokens: int,
                      reps: int) -> PrefixReuse:
    """Second-task TTFT on a ~`doc_tokens` text after a first task on the same text."""
    counter = TokenCounter(model.path)
    docs = [document(counter, doc_tokens, seed=900 + i) for i in range(2 * reps)]
    first, second = "Summarize the text in one sentence.", "List three keywords of the text."
    n_ctx = doc_tokens + 128
    switch = _prefix_switch()
    cold, warm = [], []
    with _engine(opts, model, 2, n_ctx) as engine:
        _stream(engine, model, "Warm up: the first words are", 4)
        for i in range(reps):
            if switch is None:  # cold: the cache holds a different text
                _stream(engine, model, _task(docs[reps + i], first), 8)
                t0, times, _, _ = _stream(engine, model, _task(docs[i], second), 1)
                cold.append(times[0] - t0)
            _stream(engine, model, _task(docs[i], first), 8)
            t0, times, _, _ = _stream(engine, model, _task(docs[i], second), 1)
            warm.append(times[0] - t0)
    method = "first task on a different text (nothing of this text cached)"
    if switch is not None:
        with _engine(opts, model, 2, n_ctx, **{switch: False}) as engine:
            _stream(engine, model, "Warm up: the first words are", 4)
            for i in range(reps):
                _stream(engine, model, _task(docs[i], first), 8)
                t0, times, _, _ = _stream(engine, model, _task(docs[i], second), 1)
                cold.append(times[0] - t0)
        method = f"same two tasks with Settings.{switch}=False"
    return PrefixReuse(counter.count(_task(docs[0], second)), statistics.median(cold),
                       statistics.median(warm), method, reps)


@dataclass(frozen=True)
class WarmStart:
    """`localloom run MODEL "prompt" --max-tokens 1`, model file already in the page cache."""

    median_s: float
    best_s: float
    runs: int
    command: str


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("localloom")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("localloom")
    return [found] if found else [sys.executable, "-m", "localloom"]


def warm_start(opts: EngineOptions, model: ModelFile, *, runs: int) -> WarmStart:
    """Wall time of the CLI from start to exit after one generated token."""
    env = dict(os.environ, LOCALLOOM_HOME=str(opts.home), LOCALLOOM_N_THREADS=str(opts.threads),
               LOCALLOOM_OFFLINE="1", HF_HUB_OFFLINE="1")
    cmd = [*_cli(), "run", model.model_id, "Once upon a time", "--max-tokens", "1"]
    times = []
    for i in range(runs + 1):  # the first run fills the page cache and is not counted
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        elapsed = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-1500:]}")
        if i > 0:
            times.append(elapsed)
    shown = " ".join(["localloom", *cmd[-5:]]).replace("Once upon a time", '"Once upon a time"')
    return WarmStart(statistics.median(times), min(times), runs, shown)
