"""What a task is: prompt templates per language plus its generation parameters.

Built-in and user tasks are both plain :class:`TaskDefinition` values. Templates may use
``{text}``, ``{language}`` (the answer's language), ``{source_language}``, ``{target}``
(translate's target) and ``{NAME}`` for each of the task's options (see
:mod:`localloom.tasks.options`); only those names are substituted, in one pass, so other
braces in the user's text or template are left alone.

Example::

    task = TaskDefinition(
        name="tldr", description="A one-line TL;DR",
        prompts={"en": PromptTemplate(instruction="Write a one-line TL;DR of this text:",
                                      completion="Text:\\n{text}\\n\\nTL;DR:")},
        max_tokens=64)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from localloom.tasks.options import OptionValue, OutputRules, TaskOption

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_P",
    "FIXED_PLACEHOLDERS",
    "PLACEHOLDER",
    "QUICK_MAX_TOKENS",
    "LongText",
    "OptionShape",
    "PromptTemplate",
    "TaskDefinition",
    "render_template",
]

# LocalLoom's original task settings; each is defined once, here.
DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 256
DEFAULT_TOP_P = 0.9
QUICK_MAX_TOKENS = 128

LongText = Literal["map_reduce", "per_chunk"]
# A built-in task whose wording depends on several options at once: (chosen options,
# template language) -> (extra template values, output rules).
OptionShape = Callable[[Mapping[str, OptionValue], str], tuple[dict[str, str], OutputRules]]
FIXED_PLACEHOLDERS = frozenset({"text", "language", "source_language", "target", "context"})
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Substitute the known placeholders only (never ``str.format``: user text is data)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass(frozen=True)
class PromptTemplate:
    """One language's prompts for a task.

    `instruction` is what chat models get, followed by the text. `completion` is a
    document a base model continues (it must contain ``{text}``); a base model's answer
    ends at the task's `completion_stop` (by default the first blank line).
    """

    instruction: str
    completion: str


@dataclass(frozen=True)
class TaskDefinition:
    """A named task: prompts by language code, and how it samples."""

    name: str
    description: str
    prompts: Mapping[str, PromptTemplate]
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    top_p: float = DEFAULT_TOP_P
    quick_max_tokens: int = QUICK_MAX_TOKENS
    # How text longer than the context is handled: one answer from summaries of the
    # parts ("map_reduce"), or one answer per part, in order ("per_chunk").
    long_text: LongText = "per_chunk"
    needs_target: bool = False  # translate: asks for a target language
    completion_stop: tuple[str, ...] = ("\n\n",)
    # The answer copies runs of the input (a rewrite, a summary): decoding may guess ahead
    # from the prompt (prompt-lookup speculative decoding; Settings.prompt_lookup).
    prompt_lookup: bool = False
    origin: str = "builtin"
    fallback_language: str = field(default="en")
    options: tuple[TaskOption, ...] = ()
    shape: OptionShape | None = None
    rules: OutputRules = field(default_factory=OutputRules)  # limits whatever the options
    # proofread: the result lists each change from the original text with its position
    reports_corrections: bool = False

    def option_values(self, chosen: Mapping[str, OptionValue],
                      language: str) -> tuple[dict[str, str], OutputRules]:
        """Template values and output rules of the chosen options (every option present,
        see :func:`~localloom.tasks.options.resolve_options`), for a template in
        `language`."""
        values = {o.name: o.phrase(chosen[o.name], language) for o in self.options}
        rules = self.rules
        for option in self.options:
            value_rules = option.rules.get(str(chosen[option.name]))
            if value_rules is not None:
                rules = rules.merge(value_rules)
        if self.shape is not None:
            extra, shape_rules = self.shape(chosen, language)
            values.update(extra)
            rules = rules.merge(shape_rules)
        return values, rules

    def template_for(self, language: str) -> tuple[str, PromptTemplate]:
        """The template in `language`, else the fallback language's, else the first one."""
        if language in self.prompts:
            return language, self.prompts[language]
        if self.fallback_language in self.prompts:
            return self.fallback_language, self.prompts[self.fallback_language]
        first = next(iter(self.prompts))
        return first, self.prompts[first]

    def max_tokens_for(self, quick: bool) -> int:
        """Tokens asked for: quick mode asks for fewer."""
        return min(self.quick_max_tokens, self.max_tokens) if quick else self.max_tokens
