"""How a streamed answer is cut: leading blank lines skipped, stop strings honoured."""

from __future__ import annotations

from localloom.tasks.prompts import AnswerText


def _feed(pieces: list[str], stops: list[str]) -> tuple[str, str, bool]:
    answer = AnswerText(stops)
    shown = "".join(answer.feed(p) for p in pieces)
    shown += answer.finish()
    return shown, answer.text, answer.stopped


def test_a_blank_line_before_the_answer_does_not_end_it() -> None:
    shown, text, stopped = _feed(["\n", "\n", " The heron", " waits.", "\n\n", "More"], ["\n\n"])
    assert text == shown == "The heron waits."
    assert stopped


def test_a_stop_string_split_across_pieces_is_never_shown() -> None:
    shown, text, _ = _feed(["A bird", ".\n", "\nNext paragraph"], ["\n\n"])
    assert shown == text == "A bird."


def test_text_that_only_looks_like_a_stop_start_is_released() -> None:
    shown, text, stopped = _feed(["Line one\n", "Line two"], ["\n\n"])
    assert shown == text == "Line one\nLine two"
    assert not stopped


def test_without_stops_everything_is_kept_but_outer_whitespace() -> None:
    shown, text, _ = _feed(["  \n", "Hola", " mundo ", "\n"], [])
    assert shown == text == "Hola mundo"
