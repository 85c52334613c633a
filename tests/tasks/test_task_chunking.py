"""Splitting long text into parts that fit the context, losing nothing."""

from __future__ import annotations

import re

import pytest

from localloom.errors import TaskError
from localloom.tasks.chunking import chunk_budget, chunk_text


def words(text: str) -> int:
    """A tokenizer stand-in: one token per word, plus one for BOS (as llama.cpp adds)."""
    return len(text.split()) + 1


def chars(text: str) -> int:
    """A tokenizer stand-in where long unbroken runs cost many tokens."""
    return len(text) // 4 + 1


def _doc(paragraphs: int, sentences: int = 5) -> str:
    return "\n\n".join(
        " ".join(f"Paragraph {p} sentence {s} has a few words in it." for s in range(sentences))
        for p in range(paragraphs)
    )


def test_budget_is_context_minus_prompt_answer_and_margin() -> None:
    assert chunk_budget(n_ctx=4096, prompt_tokens=40, max_tokens=256, margin=8) == 3792


def test_budget_too_small_for_any_text_says_the_numbers_and_what_to_do() -> None:
    with pytest.raises(TaskError) as info:
        chunk_budget(n_ctx=300, prompt_tokens=40, max_tokens=256)
    message = str(info.value)
    assert "300 tokens" in message and "max_tokens=256" in message and "--quick" in message


def test_every_chunk_fits_the_budget_and_together_they_hold_every_word() -> None:
    text = _doc(40)
    chunks = chunk_text(text, 120, words)
    assert len(chunks) > 1
    assert all(words(c) <= 120 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_chunks_break_at_paragraphs_when_paragraphs_fit() -> None:
    text = _doc(12)  # each paragraph is 50 words
    chunks = chunk_text(text, 120, words)
    for chunk in chunks:
        assert chunk.startswith("Paragraph") and chunk.endswith("in it.")
        assert len(re.findall(r"sentence 0 ", chunk)) == 2  # two whole paragraphs per chunk


def test_a_paragraph_longer_than_the_budget_is_split_at_sentences() -> None:
    text = _doc(1, sentences=30)
    chunks = chunk_text(text, 40, words)
    assert all(words(c) <= 40 for c in chunks)
    assert all(c.endswith("in it.") for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_an_unbroken_run_longer_than_the_budget_is_cut_by_characters() -> None:
    blob = "x" * 5000
    text = f"Before.\n\n{blob}\n\nAfter."
    chunks = chunk_text(text, 100, chars)
    assert all(chars(c) <= 100 for c in chunks)
    assert re.sub(r"\s", "", "".join(chunks)) == f"Before.{blob}After."


def test_text_that_fits_is_one_chunk_and_blank_text_is_none() -> None:
    assert chunk_text("  A short note.  ", 50, words) == ["A short note."]
    assert chunk_text(" \n\n ", 50, words) == []


def test_chunks_are_rechecked_when_token_counts_do_not_add_up() -> None:
    # A tokenizer where joining pieces costs extra tokens: packing by the sum alone
    # would overflow; the real count of each chunk must still be within budget.
    def joined_costs_more(text: str) -> int:
        return words(text) + 3 * text.count("\n\n")

    text = _doc(30, sentences=1)  # 30 paragraphs of 11 words
    chunks = chunk_text(text, 60, joined_costs_more)
    assert all(joined_costs_more(c) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()
