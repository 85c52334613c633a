"""Prompts and documents for the benchmark: fixed, seeded, and sized in tokens."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

__all__ = ["TokenCounter", "document", "prompt_set", "sized_prompt"]

_WORDS = (
    "the", "a", "of", "and", "to", "in", "is", "it", "that", "river", "city", "model", "local",
    "text", "summary", "question", "light", "morning", "garden", "window", "letter", "market",
    "winter", "engine", "paper", "story", "music", "table", "forest", "quiet", "bright",
    "small", "early", "simple", "careful", "open", "green", "old", "new", "long", "short",
    "warm", "cold", "walks", "reads", "writes", "builds", "finds", "keeps", "brings", "shows",
    "turns", "holds", "moves", "starts", "runs", "because", "while", "after", "before",
    "under", "over", "near", "between", "across", "through", "during", "without",
)


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 16))]
    return " ".join(words).capitalize() + "."


def _text(seed: int, n_sentences: int) -> str:
    rng = random.Random(seed)
    return " ".join(_sentence(rng) for _ in range(n_sentences))


class TokenCounter:
    """Counts tokens with the model's own tokenizer (llama.cpp, vocabulary only)."""

    def __init__(self, model_path: Path) -> None:
        self._path = model_path
        self._llama: Any = None

    def _vocab(self) -> Any:
        if self._llama is None:
            import llama_cpp

            self._llama = llama_cpp.Llama(str(self._path), vocab_only=True, verbose=False)
        return self._llama

    def count(self, text: str) -> int:
        """Tokens of `text` as a prompt (with the BOS token the model adds)."""
        return len(self._vocab().tokenize(text.encode(), add_bos=True))


def sized_prompt(counter: TokenCounter, n_tokens: int, seed: int) -> str:
    """A prompt of exactly (or just under) `n_tokens` tokens; a new seed gives new text."""
    words = _text(seed, n_tokens).split()
    lo, hi = 1, len(words)
    while lo < hi:  # the longest word prefix that fits
        mid = (lo + hi + 1) // 2
        if counter.count(" ".join(words[:mid])) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def prompt_set(n: int, seed: int = 7) -> list[str]:
    """`n` distinct short prompts (about 20-40 tokens) that differ from their first word."""
    return [f"Note {i + 1}: {_text(seed * 1000 + i, 2)} Continue the note:" for i in range(n)]


def document(counter: TokenCounter, n_tokens: int, seed: int) -> str:
    """A document of about `n_tokens` tokens for the prefix-reuse measurement."""
    return sized_prompt(counter, n_tokens, seed)
