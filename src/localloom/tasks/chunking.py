"""Token-aware splitting of long text into parts that each fit a token budget.

Text is cut at the largest boundary that works — paragraphs, then lines, then sentences,
then words, then characters — and the pieces are packed greedily into chunks. Each chunk
is re-counted with the real tokenizer before it is returned, so a chunk never exceeds the
budget even where token counts do not add up exactly. Nothing is dropped: the chunks,
joined in order, hold every piece of the text.

Example::

    budget = chunk_budget(n_ctx=4096, prompt_tokens=40, max_tokens=256)
    chunks = chunk_text(text, budget, lambda s: engine.count_tokens(s, model=model))
"""

from __future__ import annotations

import re
from collections.abc import Callable

from localloom.errors import TaskError

__all__ = ["MIN_CHUNK_TOKENS", "chunk_budget", "chunk_text"]

MIN_CHUNK_TOKENS = 32
# Boundaries to cut at, largest first. Each pattern's match stays with the piece before it.
_SEPARATORS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?。！？])\s+"),
    re.compile(r"\s+"),
)

CountTokens = Callable[[str], int]


def chunk_budget(n_ctx: int, prompt_tokens: int, max_tokens: int, margin: int = 8) -> int:
    """Tokens of input text one call can carry: context − prompt − answer − margin.

    Raises TaskError with the numbers when that leaves too little room for text.
    """
    budget = n_ctx - prompt_tokens - max_tokens - margin
    if budget < MIN_CHUNK_TOKENS:
        raise TaskError(
            f"The model's context ({n_ctx} tokens) has room for only {max(budget, 0)} tokens of "
            f"text after the prompt ({prompt_tokens}) and the answer (max_tokens={max_tokens}). "
            "Use --quick or a smaller max_tokens, or load the model with a larger context "
            "(LOCALLOOM_N_CTX)."
        )
    return budget


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split after each match, keeping separators, so ''.join(parts) == text."""
    parts: list[str] = []
    start = 0
    for match in pattern.finditer(text):
        if match.end() > start and match.start() > start:
            parts.append(text[start:match.end()])
            start = match.end()
    if start < len(text):
        parts.append(text[start:])
    return [p for p in parts if p]


def _pieces(text: str, budget: int, count: CountTokens, level: int = 0) -> list[tuple[str, int]]:
    """Pieces of `text` that each fit the budget, with their token counts."""
    n = count(text)
    if n <= budget:
        return [(text, n)]
    for depth in range(level, len(_SEPARATORS)):
        parts = _split_keep(text, _SEPARATORS[depth])
        if len(parts) > 1:
            out: list[tuple[str, int]] = []
            for part in parts:
                out.extend(_pieces(part, budget, count, depth))
            return out
    # One unbroken run (a long URL, a base64 blob): halve it by characters.
    if len(text) <= 1:
        raise TaskError(f"A single character needs {n} tokens, more than the budget of "
                        f"{budget}; the context is too small for this text.")
    middle = len(text) // 2
    return (_pieces(text[:middle], budget, count, len(_SEPARATORS))
            + _pieces(text[middle:], budget, count, len(_SEPARATORS)))


def _pack(pieces: list[tuple[str, int]], budget: int) -> list[list[tuple[str, int]]]:
    groups: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    used = 0
    for piece, n in pieces:
        if current and used + n > budget:
            groups.append(current)
            current, used = [], 0
        current.append((piece, n))
        used += n
    if current:
        groups.append(current)
    return groups


def _verified(group: list[tuple[str, int]], budget: int, count: CountTokens) -> list[str]:
    text = "".join(p for p, _ in group)
    if len(group) == 1 or count(text.strip()) <= budget:
        return [text]
    middle = len(group) // 2  # counts did not add up: split the group and check again
    return _verified(group[:middle], budget, count) + _verified(group[middle:], budget, count)


def chunk_text(text: str, budget: int, count: CountTokens) -> list[str]:
    """Split `text` into stripped, non-empty chunks of at most `budget` tokens each."""
    if budget < 1:
        raise TaskError(f"The token budget per chunk must be positive (got {budget}).")
    if not text.strip():
        return []
    chunks: list[str] = []
    for group in _pack(_pieces(text, budget, count), budget):
        chunks.extend(_verified(group, budget, count))
    return [c.strip() for c in chunks if c.strip()]
