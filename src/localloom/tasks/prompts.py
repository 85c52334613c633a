"""Turning a task, a language choice and a text into what the model gets.

Chat models get one user message (the instruction, then the text). Base models get a
completion document (``Article: ... One-sentence summary:``) and a stop at the first
blank line, which is how a base model is coaxed into a short answer. The task's options
fill their placeholders in both, and set the answer's :class:`OutputRules`; a `context`
(Chrome's sharedContext/context) goes before the text unless the template places it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from localloom.catalog.entry import PromptStyle
from localloom.engine.detok import hold_back
from localloom.tasks.definition import TaskDefinition, render_template
from localloom.tasks.language import language_name
from localloom.tasks.options import OptionValue, OutputRules

_CONTEXT_LABEL = {"en": "Context", "es": "Contexto"}

__all__ = ["AnswerText", "Prompt", "PromptPlan"]


@dataclass(frozen=True)
class Prompt:
    """One model call's input: chat `messages`, or a completion `text`.

    `stop` strings end the answer once it has begun (see :class:`AnswerText`); they are
    not sent to the engine, because a base model often opens its answer with a blank line.
    """

    messages: list[dict[str, str]] | None = None
    text: str | None = None
    stop: list[str] = field(default_factory=list)
    rules: OutputRules = field(default_factory=OutputRules)

    def countable(self) -> str:
        """The text whose token count bounds the prompt's size (before template tokens)."""
        if self.messages is not None:
            return "\n".join(m["content"] for m in self.messages)
        return self.text or ""


@dataclass(frozen=True)
class PromptPlan:
    """Everything fixed about a run's prompts except the text itself."""

    task: TaskDefinition
    style: PromptStyle
    answer_language: str
    source_language: str
    target_language: str | None = None
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    context: str | None = None

    @property
    def template_language(self) -> str:
        """The language the prompt is written in (the answer's, if the task has it)."""
        return self.task.template_for(self.answer_language)[0]

    def _values(self) -> tuple[dict[str, str], OutputRules]:
        lang = self.template_language
        values, rules = self.task.option_values(self._chosen(), lang)
        values.update({
            "language": language_name(self.answer_language, lang),
            "source_language": language_name(self.source_language, lang),
            "context": self.context or "",
        })
        if self.target_language:
            values["target"] = language_name(self.target_language, lang)
        return values, rules

    def _chosen(self) -> dict[str, OptionValue]:
        """The options, with the defaults for any not given (a plan built by hand)."""
        return {o.name: self.options.get(o.name, o.default) for o in self.task.options}

    @property
    def rules(self) -> OutputRules:
        """The answer's rules (input-relative limits not yet applied)."""
        return self._values()[1]

    def build(self, text: str) -> Prompt:
        """The prompt for one call on `text`."""
        lang, template = self.task.template_for(self.answer_language)
        values, rules = self._values()
        rules = rules.for_input(len(text.split()))
        if self.style == "completion":
            body = render_template(template.completion, {**values, "text": text})
            body = self._with_context(template.completion, body, lang)
            return Prompt(text=body, stop=self._stops(rules), rules=rules)
        instruction = render_template(template.instruction, values)
        if lang != self.answer_language and not self.task.needs_target:
            # No prompt in the answer's language: ask for it explicitly.
            instruction += f" Answer in {language_name(self.answer_language, 'en')}."
        instruction = self._with_context(template.instruction, instruction, lang)
        return Prompt(messages=[{"role": "user", "content": f"{instruction}\n\n{text}"}],
                      rules=rules)

    def _with_context(self, template: str, rendered: str, lang: str) -> str:
        if not self.context or "{context}" in template:
            return rendered
        return f"{_CONTEXT_LABEL.get(lang, 'Context')}: {self.context}\n\n{rendered}"

    def _stops(self, rules: OutputRules) -> list[str]:
        stops = list(self.task.completion_stop)
        if rules.list_style is not None and (rules.max_items or 2) > 1:
            # A list's items are lines: it ends at a blank line, not a line break.
            stops = [s for s in stops if s != "\n"] or ["\n\n"]
        if rules.max_lines == 1 and "\n" not in stops:
            stops.append("\n")
        return stops

    def overhead_tokens(self, count: Callable[[str], int], template_tokens: int = 0) -> int:
        """Tokens the prompt takes besides the text.

        `template_tokens` is what the model's chat template adds around a message
        (measured by the runner); it does not apply to completion prompts.
        """
        tokens = count(self.build("").countable())
        return tokens + (template_tokens if self.style == "chat" else 0)


class AnswerText:
    """An answer assembled from streamed pieces.

    Leading whitespace is dropped, and the answer ends at the first stop string that
    comes after it has begun. Text that might be the start of a stop string, and trailing
    whitespace, are held back until it is clear, so what :meth:`feed` releases never has to
    be taken back and adds up to exactly :attr:`text`.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._text = ""
        self._released = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """The answer so far, without surrounding whitespace."""
        return self._text.strip()

    def feed(self, piece: str) -> str:
        """Add a piece; returns the text that is now safe to show."""
        if self.stopped:
            return ""
        self._text += piece if self._text else piece.lstrip()
        cuts = [i for i in (self._text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self._text = self._text[:min(cuts)]
            self.stopped = True
            return self._release(len(self._text.rstrip()))
        hold = hold_back(self._text, self.stops)
        # Trailing whitespace waits too: it is shown only if more text follows it.
        return self._release(min(len(self._text) - hold, len(self._text.rstrip())))

    def finish(self) -> str:
        """The held-back rest, once the stream has ended (trailing whitespace dropped)."""
        end = len(self._text.rstrip())
        return self._release(end)

    def _release(self, upto: int) -> str:
        out = self._text[self._released:upto] if upto > self._released else ""
        self._released = max(self._released, upto)
        return out
