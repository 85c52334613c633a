"""Scheduler cost per sequence per step, on CPU with the tiny test model.

The tiny model decodes in microseconds, so what a step costs is nearly all the scheduler's
Python work: 32 streams (half greedy, half sampled) of ~200 tokens each, EOS banned so none
ends early. Prints microseconds per sequence per step: wall time, and the scheduler thread's
own CPU time outside llama_decode (steady on a busy shared machine, where wall time is not).
``--profile`` adds a cProfile of the scheduler thread. ``--opcodes`` counts instead the Python
bytecode instructions the scheduler thread runs per sequence per step: the same count on a busy
machine as on a quiet one (times are not), so a refactor can show it adds no Python work.

    python -m bench.step_overhead [--streams 32] [--tokens 200] [--profile | --opcodes]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from localloom.config import Settings
from localloom.engine import AsyncEngine, Engine
from localloom.testing import TINY_SHAPE, write_synthetic_gguf


def _profile_scheduler(prof: cProfile.Profile) -> None:
    """Start ``prof`` inside the next scheduler thread (cProfile only sees its own thread)."""

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        if threading.current_thread().name.startswith("localloom-"):
            threading.setprofile(None)
            prof.enable()

    threading.setprofile(hook)


class _OpcodeCounter:
    """Python bytecode instructions run by the next scheduler thread (a trace function on
    it alone; other threads started meanwhile drop theirs at their first call)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        """Trace the scheduler thread that starts next."""

        def trace(frame: FrameType, event: str, arg: Any) -> Any:
            frame.f_trace_opcodes = True
            if event == "opcode":
                self.count += 1
            return trace

        def hook(frame: FrameType, event: str, arg: Any) -> Any:
            if threading.current_thread().name.startswith("localloom-"):
                return trace(frame, event, arg)
            sys.settrace(None)
            return None

        threading.settrace(hook)

    def report(self, seq_steps: int) -> str:
        """Instructions per sequence-step since the last reset."""
        return (f"scheduler thread: {self.count / seq_steps:.1f} Python bytecode instructions "
                "per sequence per step (times are slowed by the tracing)")


class _CpuClock:
    """CPU time the scheduler thread spends in its steps and in llama_decode.

    Wraps the bound methods on the instances (a benchmark probe; the loop looks them up on
    its step loop and context each step)."""

    def __init__(self, sched: Any) -> None:
        self.step = 0.0
        self.decode = 0.0
        # Wall clock: whole steps, llama_decode, fetching the logits (a GPU waits there).
        self.step_wall = self.decode_wall = self.logits_wall = 0.0
        step, decode, logits = sched.steps.step, sched.ctx.decode, sched.ctx.output_logits

        def timed_step() -> None:
            t0, w0 = time.thread_time(), time.perf_counter()
            step()
            self.step += time.thread_time() - t0
            self.step_wall += time.perf_counter() - w0

        def timed_decode() -> int:
            t0, w0 = time.thread_time(), time.perf_counter()
            rc = int(decode())
            self.decode += time.thread_time() - t0
            self.decode_wall += time.perf_counter() - w0
            return rc

        def timed_logits(n_vocab: int) -> Any:
            w0 = time.perf_counter()
            out = logits(n_vocab)
            self.logits_wall += time.perf_counter() - w0
            return out

        sched.steps.step = timed_step
        sched.ctx.decode = timed_decode
        sched.ctx.output_logits = timed_logits

    def report(self, steps: int, wall: float) -> str:
        """Milliseconds per step, by where the time went."""
        ms = 1000.0 / max(steps, 1)
        python = self.step_wall - self.decode_wall - self.logits_wall
        return (f"per step (ms): {wall * ms:.3f} in all = llama_decode {self.decode_wall * ms:.3f}"
                f" + logits fetch {self.logits_wall * ms:.3f} + step Python {python * ms:.3f}"
                f" + between steps {(wall - self.step_wall) * ms:.3f}")


def _prompt(i: int, words: int) -> str:
    """Stream i's prompt: a few tokens, or about ``words`` words (the GPU bench uses 128
    tokens), different from the first word on so no stream reuses another's cache."""
    filler = " ".join(("cat", "dog", "model", "text", "data", "world")[(i + k) % 6]
                      for k in range(words))
    return f"stream {i} says {filler}"


def _async_streams(aeng: AsyncEngine, streams: int, tokens: int, mode: str,
                   words: int = 0) -> None:
    """The GPU bench's consumers: N streamed requests on one event loop (AsyncEngine)."""

    async def one(i: int) -> None:
        greedy = mode == "greedy" or (mode == "mixed" and i % 2 == 0)
        stream = await aeng.completions.create(
            prompt=_prompt(i, words), max_tokens=tokens, temperature=0.0 if greedy else 0.8,
            seed=i, logit_bias={"2": -100.0}, stream=True)
        async for _ in stream:
            pass

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(streams)))

    asyncio.run(main())


def run(streams: int, tokens: int, profile: bool, mode: str = "mixed",
        n_vocab: int = TINY_SHAPE.n_vocab, consumer: str = "threads",
        model_path: Path | None = None, n_gpu_layers: int = 0, threads: int = 1,
        words: int = 0, n_ctx: int = 512, *, opcodes: bool = False) -> None:
    """Run the streams and print the per-sequence step cost."""
    tmp = Path(tempfile.mkdtemp(prefix="step-overhead-"))
    # A wider vocabulary (32,000 as Llama 2) shows the per-row logits work real models have.
    shape = replace(TINY_SHAPE, n_vocab=max(n_vocab, TINY_SHAPE.n_vocab))
    model = model_path or write_synthetic_gguf(tmp / "tiny.gguf", shape)
    settings = Settings(home=tmp, n_threads=threads, n_parallel=streams, n_ctx=n_ctx,
                        n_gpu_layers=n_gpu_layers)
    prof = cProfile.Profile()
    if profile:
        _profile_scheduler(prof)
    counter = _OpcodeCounter()
    if opcodes:
        counter.install()
    aeng = AsyncEngine(settings) if consumer == "async-streams" else None
    with aeng.engine if aeng is not None else Engine(settings) as eng:
        eng.reload(str(model))
        sched = eng._runners[next(iter(eng._runners))].scheduler
        eng.completions.create(prompt="warm up", max_tokens=4)
        clock = _CpuClock(sched)

        def one(i: int) -> None:
            greedy = mode == "greedy" or (mode == "mixed" and i % 2 == 0)
            temp = 0.0 if greedy else 0.8
            eng.completions.create(prompt=_prompt(i, words), max_tokens=tokens,
                                   temperature=temp, seed=i, logit_bias={"2": -100.0})

        # not `threads`: that is the compute-thread count this run was asked for
        workers = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        steps0, dec0 = sched.stats.steps, sched.stats.decode_time_s
        counter.count = 0
        t0 = time.perf_counter()
        if aeng is not None:
            _async_streams(aeng, streams, tokens, mode, words)
        for t in workers if consumer == "threads" else ():
            t.start()
        for t in workers if consumer == "threads" else ():
            t.join()
        wall = time.perf_counter() - t0
        steps = sched.stats.steps - steps0
        decode = sched.stats.decode_time_s - dec0
    seq_steps = streams * tokens  # each sampled token is one sequence-step
    print(f"{streams} streams x {tokens} tokens: {steps} steps in {wall:.2f} s "
          f"({steps / wall:.0f} steps/s)")
    print(f"per sequence per step: {wall / seq_steps * 1e6:.1f} us in all, "
          f"{(wall - decode) / seq_steps * 1e6:.1f} us outside llama_decode (wall); "
          f"scheduler CPU outside llama_decode {(clock.step - clock.decode) / seq_steps * 1e6:.1f}"
          " us")
    print(clock.report(steps, wall))
    if opcodes:
        threading.settrace(None)  # type: ignore[arg-type]
        print(counter.report(seq_steps))
    if profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--mode", choices=("mixed", "greedy", "sampled"), default="mixed")
    ap.add_argument("--vocab", type=int, default=TINY_SHAPE.n_vocab)
    ap.add_argument("--consumer", choices=("threads", "async-streams"), default="threads",
                    help="threads: whole responses, one thread each; async-streams: streamed "
                    "through AsyncEngine on one event loop, as the GPU bench does")
    ap.add_argument("--model", type=Path, default=None,
                    help="a GGUF to run instead of the synthetic tiny model")
    ap.add_argument("--ngl", type=int, default=0, help="layers on the GPU")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt-words", type=int, default=0,
                    help="longer prompts: their prefill mixes with the running streams")
    ap.add_argument("--ctx", type=int, default=512, help="context per sequence")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--opcodes", action="store_true",
                    help="count the scheduler thread's Python instructions per sequence-step")
    args = ap.parse_args()
    run(args.streams, args.tokens, args.profile, args.mode, args.vocab, args.consumer,
        args.model, args.ngl, args.threads, args.prompt_words, args.ctx, opcodes=args.opcodes)


if __name__ == "__main__":
    main()
