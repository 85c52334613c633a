"""Prompt-lookup speculative decoding: a rewrite, decoded with lookup off, auto and on.

The request is the rewrite task's prompt on the opening of ``examples/article.txt``; the
answer is decoded greedily to ``max_tokens`` (end of text banned, so every mode makes the same
number of tokens, and, greedy, the same tokens). Each mode gets its own Engine; the table
shows decode tokens/s (first to last streamed token), how many guessed tokens were right,
and the ratio to plain decoding. ``auto`` (the default) must never be much slower than
``off``; ``on`` shows what guessing gives where it pays and costs where it does not.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine_runs import EngineOptions, _bias, _engine
from bench.models import ModelFile

__all__ = ["LookupMode", "prompt_lookup_speed"]

ARTICLE = Path(__file__).resolve().parent.parent / "examples" / "article.txt"
MODES = ("off", "auto", "on")


@dataclass(frozen=True)
class LookupMode:
    """One Settings.prompt_lookup mode on the rewrite request."""

    mode: str
    decode_ts: float
    decode_sd: float
    tokens: int
    drafted: int  # guessed tokens over all runs
    accepted: int  # of which right
    reps: int


def _rewrite_prompt(chars: int) -> str:
    from localloom.tasks.builtin import REWRITE

    text = ARTICLE.read_text(encoding="utf-8")[:chars].rsplit(" ", 1)[0]
    # the option slots (tone, length, format) empty: the default rewrite
    return REWRITE.prompts["en"].completion.format(text=text, tone="", length="", format="")


def _decode_rate(engine: Any, model: ModelFile, prompt: str, max_tokens: int) -> float:
    times: list[float] = []
    for chunk in engine.completions.create(prompt=prompt, max_tokens=max_tokens,
                                           temperature=0.0, logit_bias=_bias(model),
                                           stream=True, prompt_lookup=True):
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter())
    # Streamed pieces may carry several tokens (accepted guesses): count tokens, not pieces.
    return (max_tokens - 1) / (times[-1] - times[0])


def prompt_lookup_speed(opts: EngineOptions, model: ModelFile, *, reps: int,
                        max_tokens: int = 128, chars: int = 1600) -> list[LookupMode]:
    """Decode rate of the rewrite request in each lookup mode."""
    prompt = _rewrite_prompt(chars)
    out = []
    for mode in MODES:
        with _engine(opts, model, 1, 2048, prompt_lookup=mode) as engine:
            _decode_rate(engine, model, prompt, 8)  # warm up (and fill the plain-rate probe)
            before = engine.runtime_stats()
            rates = [_decode_rate(engine, model, prompt, max_tokens) for _ in range(reps)]
            after = engine.runtime_stats()
        sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
        out.append(LookupMode(mode, statistics.fmean(rates), sd, max_tokens,
                              after.lookup_drafted - before.lookup_drafted,
                              after.lookup_accepted - before.lookup_accepted, reps))
    return out
