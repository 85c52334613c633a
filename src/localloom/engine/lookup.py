"""Prompt-lookup (n-gram) speculative decoding for one stream.

A rewrite or a summary copies runs of its source text. When the last few tokens of the
sequence also occur earlier (in the prompt or in what was generated), the tokens that followed
them there are a cheap guess of what comes next. The scheduler decodes the guess together with
the real next token in one batch, samples every row in order with the request's own sampler,
and keeps the guessed tokens up to the first one the sampler did not pick. Each kept token
was sampled from the same distribution as in plain decoding, with the sampler's random draws
in the same order, so the answer is the same, except that llama.cpp computes a batch of
several tokens with other kernels than one token: for K-quantized models on a CPU the logits
differ in their last digits (measured up to 0.8 on Gemma 3 270M Q4_K_M), which can flip a
near tie. With the test models (F32, Q4_0) the outputs are identical (tests/engine/test_lookup).

Guessing costs something: a batch of k + 1 tokens takes longer than one, and on a CPU much
longer. :class:`LookupGuard` keeps speculation on for a request only while its measured tokens
per second beat the model's plain single-stream rate on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIN_STEP_S", "LookupGuard", "NgramIndex", "PlainRate"]

# Longest n-gram first: a 3-token match predicts better than a 2-token one.
NGRAM_SIZES = (3, 2)
MAX_DRAFT = 8
# ``auto`` guesses only where a plain step takes at least this long. Below it a guessing
# step costs several plain ones (on an H100 a 1B model's 1.3 ms step became ~4 ms with 5
# tokens, and the steps after it slower too), more than right guesses win back: auto lost
# 25% there, while the 7B shape (3.4 ms steps) gained 23% and CPU models (20+ ms) up to 53%.
MIN_STEP_S = 0.002
# A paused request whose guessing step took under CHEAP_TRIAL plain steps tries again after
# CHEAP_PAUSE tokens instead of the doubling pause.
CHEAP_TRIAL = 1.5
CHEAP_PAUSE = 8


class NgramIndex:
    """Where each n-gram of a token sequence last occurred; proposes what followed it.

    Example::

        index = NgramIndex([5, 6, 7, 8, 5, 6])
        index.draft(4)  # [7, 8, 5, 6]: what followed the last earlier "5 6"
    """

    def __init__(self, tokens: list[int], sizes: tuple[int, ...] = NGRAM_SIZES) -> None:
        self.tokens: list[int] = []
        self.sizes = sizes
        # n-gram -> index of the token that followed its latest occurrence.
        self._next: list[dict[tuple[int, ...], int]] = [{} for _ in sizes]
        self.extend(tokens)

    def append(self, token: int) -> None:
        """Add one token (the n-grams that end just before it now point at it)."""
        toks = self.tokens
        i = len(toks)
        for n, table in zip(self.sizes, self._next, strict=True):
            if i >= n:
                table[tuple(toks[i - n:i])] = i
        toks.append(token)

    def extend(self, tokens: list[int]) -> None:
        """Add several tokens."""
        for token in tokens:
            self.append(token)

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` tokens that followed the latest earlier occurrence of the current tail."""
        toks = self.tokens
        if k <= 0:
            return []
        for n, table in zip(self.sizes, self._next, strict=True):
            if len(toks) <= n:
                continue
            at = table.get(tuple(toks[-n:]))
            if at is not None:
                return toks[at:at + k]
        return []


@dataclass
class PlainRate:
    """The model's plain one-sequence decode step time on this machine (moving average)."""

    step_s: float = 0.0
    samples: int = 0

    def record(self, seconds: float) -> None:
        """Add one plain step's wall time."""
        self.samples += 1
        weight = 0.2 if self.samples > 5 else 1.0 / self.samples
        self.step_s += weight * (seconds - self.step_s)

    @property
    def known(self) -> bool:
        """Enough plain steps were seen to compare against."""
        return self.samples >= 3

    @property
    def worth_guessing(self) -> bool:
        """Plain steps are slow enough here that a guessing step can pay (MIN_STEP_S)."""
        return self.known and self.step_s >= MIN_STEP_S


@dataclass
class LookupGuard:
    """One request's speculation: its draft length, and whether it still pays off.

    ``adaptive`` (the ``auto`` setting) pauses speculation once the request's own tokens per
    second, averaged over its last steps, fall below the plain rate, and tries again after
    32, 64, 128 ... more tokens (8 where a guessing step costs under 1.5 plain steps, as on
    a CPU): an answer often starts in its own words and copies the
    source later (a rewrite of the starter model guessed 0 of 14 tokens at first, 186 of 208
    in all). A first trial is judged after 2 guessing steps, a retry after 1: where a guess
    costs 3 plain steps (a 1B model on an H100) longer trials cost more than they find.
    ``on`` never pauses.
    """

    adaptive: bool = True
    draft_len: int = 4
    active: bool = True
    rate: float = 0.0  # tokens per second of this request's speculative steps (average)
    steps: int = 0  # speculative steps since (re)starting
    resume_at: int = 0  # paused: guess again once this many tokens are generated
    backoff: int = 32
    trial: int = 2  # guessing steps before the first judgement (1 after a pause)

    def ready(self, n_gen: int) -> bool:
        """Whether to guess at this step (resuming after a pause when it is time)."""
        if not self.active and n_gen >= self.resume_at:
            self.active, self.steps, self.trial = True, 0, 1
            self.draft_len = max(2, self.draft_len)
        return self.active

    def record(self, seconds: float, drafted: int, accepted: int, plain: PlainRate,
               n_gen: int = 0) -> None:
        """One speculative step made ``accepted + 1`` tokens in ``seconds``."""
        self.steps += 1
        step_rate = (accepted + 1) / max(seconds, 1e-9)
        self.rate = step_rate if self.steps == 1 else self.rate + 0.3 * (step_rate - self.rate)
        if accepted == drafted:  # all guessed right: guess further
            self.draft_len = min(MAX_DRAFT, self.draft_len + 2)
        elif accepted == 0:
            self.draft_len = max(1, self.draft_len // 2)
        if not self.adaptive or not plain.known or self.steps < self.trial:
            return
        if self.rate < 1.0 / plain.step_s:  # slower than plain decoding here: pause
            self.active = False
            if seconds < CHEAP_TRIAL * plain.step_s:
                # A guessing step costs little more than a plain one here (a CPU): trying
                # again soon is cheap, and finds the copying part of an answer early.
                self.resume_at = n_gen + CHEAP_PAUSE
            else:
                self.resume_at = n_gen + self.backoff
                self.backoff = min(2 * self.backoff, 512)
