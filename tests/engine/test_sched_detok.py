"""Per-sequence text on its own: deltas, stop strings, split characters, logprob texts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sched_helpers import byte_tokens, tiny_context

from localloom.engine.detok import SeqText, TokenTexts, hold_back
from localloom.engine.events import Delta, Event, TokenLogprobData
from localloom.engine.outbox import Outbox, Route
from localloom.engine.runtime import LlamaModel


@pytest.fixture(scope="module")
def model(tiny_gguf: Path) -> Iterator[LlamaModel]:
    with tiny_context(tiny_gguf, n_parallel=1) as (loaded, _):
        yield loaded


@pytest.fixture(scope="module")
def texts(model: LlamaModel) -> TokenTexts:
    return TokenTexts(model)


class Recorder:
    """A SeqText with its outbox and the deltas it delivered."""

    def __init__(self, texts: TokenTexts, **options: object) -> None:
        self.events: list[Event] = []
        self.outbox = Outbox()
        self.out = SeqText(texts, Route.of(self.events.append), self.outbox.post, index=0,
                           **options)  # type: ignore[arg-type]

    def feed(self, text: str) -> list[str]:
        """Feed ``text`` byte by byte; the delta texts delivered after each byte."""
        seen = []
        for token in byte_tokens(text):
            stopped = self.out.feed(token)
            self.outbox.flush()
            seen.append("".join(d.text for d in self.deltas()))
            if stopped:
                break
        return seen

    def deltas(self) -> list[Delta]:
        return [ev for ev in self.events if isinstance(ev, Delta)]

    def sent(self) -> str:
        return "".join(d.text for d in self.deltas())


def test_hold_back_is_the_longest_tail_that_could_start_a_stop_string() -> None:
    assert hold_back("the end<", ["<|end|>"]) == 1
    assert hold_back("the end<|en", ["<|end|>", "\n\n"]) == 4
    assert hold_back("the end\n", ["<|end|>", "\n\n"]) == 1
    assert hold_back("the end", ["<|end|>"]) == 0
    assert hold_back("", ["ab"]) == 0
    assert hold_back("xa", ["a", "ab"]) == 1  # "a" may begin "ab"


def test_text_without_stops_is_sent_as_it_comes(texts: TokenTexts) -> None:
    rec = Recorder(texts)
    seen = rec.feed("hi there")
    assert seen[-1] == "hi there"
    assert seen == ["hi there"[:i + 1] for i in range(8)]  # nothing waits


def test_a_stop_string_split_across_tokens_is_never_sent(texts: TokenTexts) -> None:
    rec = Recorder(texts, stops=("<|end|>",))
    seen = rec.feed("answer<|end|>more")
    assert rec.out.text == "answer"
    assert all("<" not in s for s in seen)  # the stop's first bytes were held back
    rec.out.close()
    rec.outbox.flush()
    assert rec.sent() == "answer"


def test_a_held_back_prefix_that_was_no_stop_string_is_sent_later(texts: TokenTexts) -> None:
    rec = Recorder(texts, stops=("<|end|>",))
    seen = rec.feed("a<|x")
    assert seen == ["a", "a", "a", "a<|x"]
    assert not rec.out.feed(byte_tokens("<")[0])
    rec.out.close()  # the end sends what was still held
    rec.outbox.flush()
    assert rec.sent() == "a<|x<"


def test_a_character_split_across_tokens_is_sent_whole(texts: TokenTexts) -> None:
    rec = Recorder(texts)
    seen = rec.feed("né")
    assert seen == ["n", "n", "né"]
    assert rec.out.pending_bytes == b""


def test_an_unfinished_character_at_the_end_becomes_a_replacement_character(
        texts: TokenTexts) -> None:
    rec = Recorder(texts)
    rec.out.feed(byte_tokens("a")[0])
    rec.out.feed(byte_tokens("é")[0])  # the first of its two bytes
    assert rec.out.pending_bytes == "é".encode()[:1]
    rec.out.close()
    rec.outbox.flush()
    assert rec.sent() == "a\ufffd"


def test_leading_whitespace_is_dropped_when_asked(texts: TokenTexts) -> None:
    rec = Recorder(texts, lstrip=True)
    rec.feed("  \n hi ")
    assert rec.sent() == "hi "


def test_logprob_token_texts_join_to_exactly_the_content(texts: TokenTexts) -> None:
    rec = Recorder(texts, stops=("<|end|>",), logprobs=True)
    for token in byte_tokens("né <|x! <|end|>z"):
        rec.out.add_logprob(TokenLogprobData(b"", -1.0, ()))
        if rec.out.feed(token):
            break
    rec.out.close()
    rec.outbox.flush()
    deltas = rec.deltas()
    for delta in deltas:  # each delta's tokens spell exactly its text
        assert delta.logprobs is not None
        assert "".join(lp.text for lp in delta.logprobs) == delta.text
    assert rec.sent() == "né <|x! "
    tokens = [lp for d in deltas for lp in d.logprobs or ()]
    assert len(tokens) == len(byte_tokens("né <|x! <|end|>"))  # up to the stop's last byte
    assert tokens[1].text == "" and tokens[2].text == "é"  # the split character's bytes


def test_a_token_text_learned_once_serves_every_sequence(model: LlamaModel) -> None:
    shared = TokenTexts(model)
    token = byte_tokens("q")[0]
    assert shared.learn(token) == "q" and shared.cache[token] == "q"
    lead = byte_tokens("é")[0]
    assert shared.learn(lead) is None  # not whole UTF-8: each sequence's decoder does it
    first, second = Recorder(shared), Recorder(shared)
    first.feed("q")
    second.feed("q")
    assert first.sent() == second.sent() == "q"
