"""Scheduler cost per sequence per step, on CPU with the tiny test model.

The tiny model decodes in microseconds, so what a step costs is nearly all the scheduler's
Python work: 32 streams (half greedy, half sampled) of ~200 tokens each, EOS banned so none
ends early. Prints microseconds per sequence per step: wall time, and the scheduler thread's
own CPU time outside llama_decode (steady on a busy shared machine, where wall time is not).
``--profile`` adds a cProfile of the scheduler thread.

    python -m bench.step_overhead [--streams 32] [--tokens 200] [--profile]
"""

from __future__ import annotations

import argparse
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
from localloom.engine import Engine
from localloom.testing import TINY_SHAPE, write_synthetic_gguf


def _profile_scheduler(prof: cProfile.Profile) -> None:
    """Start ``prof`` inside the next scheduler thread (cProfile only sees its own thread)."""

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        if threading.current_thread().name.startswith("localloom-"):
            threading.setprofile(None)
            prof.enable()

    threading.setprofile(hook)


class _CpuClock:
    """CPU time the scheduler thread spends in its steps and in llama_decode.

    Wraps the two bound methods on the instances (a benchmark probe; the loop looks them
    up on ``self`` each step)."""

    def __init__(self, sched: Any) -> None:
        self.step = 0.0
        self.decode = 0.0
        step, decode = sched._step, sched.ctx.decode

        def timed_step() -> None:
            t0 = time.thread_time()
            step()
            self.step += time.thread_time() - t0

        def timed_decode() -> int:
            t0 = time.thread_time()
            rc = int(decode())
            self.decode += time.thread_time() - t0
            return rc

        sched._step = timed_step
        sched.ctx.decode = timed_decode


def run(streams: int, tokens: int, profile: bool, mode: str = "mixed",
        n_vocab: int = TINY_SHAPE.n_vocab) -> None:
    """Run the streams and print the per-sequence step cost."""
    tmp = Path(tempfile.mkdtemp(prefix="step-overhead-"))
    # A wider vocabulary (32,000 as Llama 2) shows the per-row logits work real models have.
    shape = replace(TINY_SHAPE, n_vocab=max(n_vocab, TINY_SHAPE.n_vocab))
    model = write_synthetic_gguf(tmp / "tiny.gguf", shape)
    settings = Settings(home=tmp, n_threads=1, n_parallel=streams, n_ctx=512)
    prof = cProfile.Profile()
    if profile:
        _profile_scheduler(prof)
    with Engine(settings) as eng:
        eng.reload(str(model))
        sched = eng._runners[next(iter(eng._runners))].scheduler
        eng.completions.create(prompt="warm up", max_tokens=4)
        clock = _CpuClock(sched)

        def one(i: int) -> None:
            greedy = mode == "greedy" or (mode == "mixed" and i % 2 == 0)
            temp = 0.0 if greedy else 0.8
            eng.completions.create(prompt=f"stream {i} says", max_tokens=tokens,
                                   temperature=temp, seed=i, logit_bias={"2": -100})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
        steps0, dec0 = sched.stats.steps, sched.stats.decode_time_s
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
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
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    run(args.streams, args.tokens, args.profile, args.mode, args.vocab)


if __name__ == "__main__":
    main()
