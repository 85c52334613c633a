"""Task options (Chrome's built-in AI `type`, `length`, `format`, `tone`, ...) and the
output rules they imply.

A task declares its options as :class:`TaskOption` values. A run's options are checked
once, at the edge, by :func:`resolve_options` (an unknown name or value is an
:class:`InvalidRequestError` naming the allowed ones); the chosen values then become
template text (``{length}`` in a prompt) and :class:`OutputRules` (one line, at most three
bullets, no markdown, ...) that :mod:`localloom.tasks.checks` enforces on the answer.

Example::

    length = TaskOption(name="length", description="How long the answer is.",
                        default="short", choices=("short", "long"),
                        phrases={"en": {"short": "in one sentence", "long": "in a paragraph"}},
                        rules={"short": OutputRules(max_sentences=1)})
    resolve_options(task, {"length": "long"})    # {"length": "long"}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from localloom.errors import InvalidRequestError
from localloom.tasks.language import LANGUAGE_NAMES, normalize_language

if TYPE_CHECKING:
    from localloom.tasks.definition import TaskDefinition

__all__ = ["ListStyle", "OptionKind", "OptionValue", "OutputRules", "TaskOption", "TextFormat",
           "resolve_options"]

OptionValue = str | int
OptionKind = Literal["choice", "count", "language"]
TextFormat = Literal["markdown", "plain-text"]
ListStyle = Literal["bullets", "lines"]

# Tokens allowed per word, sentence and item when limits set max_tokens: generous, so the
# check (which cuts at a sentence or item end) rather than max_tokens ends the answer.
TOKENS_PER_WORD = 2
TOKENS_PER_SENTENCE = 60
TOKENS_PER_ITEM = 48
_SLACK_TOKENS = 8


@dataclass(frozen=True)
class OutputRules:
    """What an answer may look like; each limit is enforced by cutting at a clean end.

    `list_style` "bullets" makes every line a bullet ("- " in markdown, "• " in plain
    text); "lines" makes every line one item without list markers (questions).
    `words_per_input_word` bounds the answer by the input's length (a shorter rewrite).
    """

    max_lines: int | None = None
    max_items: int | None = None
    max_sentences: int | None = None
    max_words: int | None = None
    max_tokens: int | None = None
    words_per_input_word: float | None = None
    text_format: TextFormat | None = None
    list_style: ListStyle | None = None

    def merge(self, other: OutputRules) -> OutputRules:
        """Both sets of rules at once: the smaller of two limits, `other`'s styles first."""
        values: dict[str, Any] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("text_format", "list_style"):
                values[f.name] = theirs if theirs is not None else mine
            else:
                values[f.name] = theirs if mine is None else mine if theirs is None else min(
                    mine, theirs)
        return OutputRules(**values)

    def for_input(self, input_words: int) -> OutputRules:
        """The rules with input-relative limits made absolute for an input of that length."""
        if self.words_per_input_word is None:
            return self
        factor = self.words_per_input_word
        limit = math.floor(input_words * factor)
        if factor >= 1:  # a few words of room, so that a short text can be fixed at all
            limit = max(limit, input_words + 8)
        limit = max(1, limit)
        words = limit if self.max_words is None else min(limit, self.max_words)
        return replace(self, max_words=words, words_per_input_word=None)

    def token_cap(self) -> int | None:
        """max_tokens implied by the limits (None: no limit implies one)."""
        caps = [self.max_tokens]
        if self.max_words is not None:
            caps.append(self.max_words * TOKENS_PER_WORD + _SLACK_TOKENS)
        if self.max_sentences is not None:
            caps.append(self.max_sentences * TOKENS_PER_SENTENCE + _SLACK_TOKENS)
        if self.max_items is not None:
            caps.append(self.max_items * TOKENS_PER_ITEM + _SLACK_TOKENS)
        known = [c for c in caps if c is not None]
        return min(known) if known else None

    @property
    def shapes(self) -> bool:
        """Whether the answer needs reshaping at all (markdown is what models write)."""
        return self != OutputRules() and self != OutputRules(text_format="markdown")


@dataclass(frozen=True)
class TaskOption:
    """One option of a task: a choice of words, a count, or a language.

    `phrases` (language -> value -> text) is what ``{name}`` becomes in the task's
    templates (the value itself when there is no phrase); `rules` (value -> rules) limits
    the answer when that value is chosen.
    """

    name: str
    description: str
    default: OptionValue
    kind: OptionKind = "choice"
    choices: tuple[str, ...] = ()
    minimum: int = 1
    maximum: int = 1
    phrases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    rules: Mapping[str, OutputRules] = field(default_factory=dict)

    def allowed(self) -> str:
        """The allowed values, in words."""
        if self.kind == "choice":
            return ", ".join(self.choices)
        if self.kind == "count":
            return f"a whole number from {self.minimum} to {self.maximum}"
        return "a language code (en, es, ...) or 'auto' (detect it)"

    def validate(self, task: str, value: object) -> OptionValue:
        """`value` as this option's type; InvalidRequestError saying what is allowed."""
        def bad() -> InvalidRequestError:
            return InvalidRequestError(
                f"Task '{task}' option '{self.name}' cannot be {value!r}: use "
                f"{self.allowed()} (default {self.default}).", param=self.name)

        if self.kind == "count":
            if isinstance(value, bool):
                raise bad()
            try:
                number = int(value) if isinstance(value, (int, str)) else None
            except ValueError:
                number = None
            if number is None or not self.minimum <= number <= self.maximum:
                raise bad()
            return number
        if not isinstance(value, str) or not value.strip():
            raise bad()
        if self.kind == "choice":
            if value.strip().lower() not in self.choices:
                raise bad()
            return value.strip().lower()
        code = normalize_language(value)
        if value.strip().lower() != "auto" and not (
                code in LANGUAGE_NAMES or re.fullmatch(r"[a-z]{2,3}", code)):
            raise bad()
        return value.strip()

    def phrase(self, value: OptionValue, language: str) -> str:
        """What ``{name}`` becomes in a template written in `language`."""
        table = self.phrases.get(language) or self.phrases.get("en") or {}
        return table.get(str(value), str(value))

    def describe(self) -> dict[str, Any]:
        """The option as ``GET /api/tasks`` lists it (what a UI builds its control from)."""
        info: dict[str, Any] = {"name": self.name, "kind": self.kind,
                                "description": self.description, "default": self.default}
        if self.kind == "choice":
            info["choices"] = list(self.choices)
        elif self.kind == "count":
            info["minimum"], info["maximum"] = self.minimum, self.maximum
        return info


def resolve_options(task: TaskDefinition, given: Mapping[str, object] | None
                    ) -> dict[str, OptionValue]:
    """Every option of `task`: the given values, checked, and the defaults for the rest."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    declared = {o.name: o for o in task.options}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        offered = (f"Its options: {', '.join(declared)}" if declared
                   else "It takes no options")
        raise InvalidRequestError(
            f"Task '{task.name}' has no option {', '.join(repr(u) for u in unknown)}. "
            f"{offered} (`localloom tasks` or GET /api/tasks lists their values).",
            param=unknown[0])
    return {name: option.validate(task.name, given[name]) if name in given else option.default
            for name, option in declared.items()}
