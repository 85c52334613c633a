"""User tasks: ``[[task]]`` tables in ``tasks.toml`` in the config dir.

A bad entry becomes a :class:`ConfigError` naming the file, the task and the field; the
valid tasks around it still load.

Example ``tasks.toml``::

    [[task]]
    name = "tldr"
    description = "A one-line TL;DR"
    max_tokens = 64
    long_text = "map_reduce"            # or "per_chunk" (the default)
    prompt_lookup = true                # the answer copies the text: guess ahead from it
    [task.prompts.en]
    instruction = "Write a one-line TL;DR of the following text:"
    completion = "Text:\\n{text}\\n\\nTL;DR:"   # for base models; optional
    [task.prompts.es]
    instruction = "Escribe un resumen de una línea del siguiente texto:"

    [[task]]
    name = "haiku"
    [task.options.mood]                 # {mood} in the templates; --option mood=sad
    choices = ["calm", "sad"]           # or kind = "count" with minimum and maximum
    default = "calm"
    phrases.en = { sad = "melancholy" } # what {mood} becomes (else the value itself)
    limits.calm = { max_lines = 3, format = "plain-text" }   # enforced on the answer
    [task.prompts.en]
    instruction = "Write a {mood} haiku about the following text:"
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from localloom._toml import FileProblem, field_problems, read_toml
from localloom.errors import ConfigError
from localloom.tasks.definition import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    FIXED_PLACEHOLDERS,
    PLACEHOLDER,
    QUICK_MAX_TOKENS,
    LongText,
    PromptTemplate,
    TaskDefinition,
)
from localloom.tasks.options import ListStyle, OutputRules, TaskOption, TextFormat

__all__ = ["TASKS_FILENAME", "load_user_tasks", "register_user_tasks"]

TASKS_FILENAME = "tasks.toml"


class _Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(min_length=1)
    completion: str | None = None

    @field_validator("completion")
    @classmethod
    def _has_text(cls, value: str | None) -> str | None:
        if value is not None and "{text}" not in value:
            raise ValueError("must contain {text}, where the input text goes")
        return value


class _Limits(BaseModel):
    """What one option value limits: enforced on the answer (see OutputRules)."""

    model_config = ConfigDict(extra="forbid")

    max_lines: int | None = Field(None, ge=1, le=1000)
    max_items: int | None = Field(None, ge=1, le=1000)
    max_sentences: int | None = Field(None, ge=1, le=1000)
    max_words: int | None = Field(None, ge=1, le=100_000)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    words_per_input_word: float | None = Field(None, gt=0.0, le=100.0)
    format: TextFormat | None = None
    list: ListStyle | None = None

    def to_rules(self) -> OutputRules:
        return OutputRules(max_lines=self.max_lines, max_items=self.max_items,
                           max_sentences=self.max_sentences, max_words=self.max_words,
                           max_tokens=self.max_tokens,
                           words_per_input_word=self.words_per_input_word,
                           text_format=self.format, list_style=self.list)


class _Option(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["choice", "count"] = "choice"
    description: str = ""
    choices: list[str] = Field(default_factory=list)
    default: str | int | None = None
    minimum: int = Field(1, ge=0, le=1000)
    maximum: int = Field(5, ge=0, le=1000)
    phrases: dict[str, dict[str, str]] = Field(default_factory=dict)
    limits: dict[str, _Limits] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> _Option:
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("a choice option needs choices = [\"a\", \"b\", ...]")
            allowed = set(self.choices)
            if self.default is None:
                self.default = self.choices[0]
            if self.default not in allowed:
                raise ValueError(f"default {self.default!r} is not one of the choices "
                                 f"{self.choices}")
        else:
            if self.minimum > self.maximum:
                raise ValueError("minimum is larger than maximum")
            allowed = {str(n) for n in range(self.minimum, self.maximum + 1)}
            if self.default is None:
                self.default = self.minimum
            if isinstance(self.default, str) or not (
                    self.minimum <= self.default <= self.maximum):
                raise ValueError(f"default must be a whole number from {self.minimum} to "
                                 f"{self.maximum}")
        named = set(self.limits) | {v for table in self.phrases.values() for v in table}
        strays = sorted(named - allowed)
        if strays:
            raise ValueError(f"phrases/limits for {strays}, which are not values of this "
                             f"option (values: {sorted(allowed)})")
        return self

    def to_option(self, name: str) -> TaskOption:
        assert self.default is not None  # set by the validator
        return TaskOption(
            name=name, description=self.description or f"Option '{name}'.",
            default=self.default, kind=self.kind, choices=tuple(self.choices),
            minimum=self.minimum, maximum=self.maximum,
            phrases={lang.lower(): dict(t) for lang, t in self.phrases.items()},
            rules={value: limits.to_rules() for value, limits in self.limits.items()})


class _UserTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    description: str = ""
    prompts: dict[str, _Prompt] = Field(min_length=1)
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1, le=32768)
    top_p: float = Field(default=DEFAULT_TOP_P, gt=0.0, le=1.0)
    quick_max_tokens: int = Field(default=QUICK_MAX_TOKENS, ge=1, le=32768)
    long_text: LongText = "per_chunk"
    prompt_lookup: bool = False
    options: dict[str, _Option] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _option_names(cls, value: dict[str, _Option]) -> dict[str, _Option]:
        for name in value:
            if not PLACEHOLDER.fullmatch("{" + name + "}") or name in FIXED_PLACEHOLDERS:
                raise ValueError(f"'{name}' cannot name an option: use lowercase letters, "
                                 "digits and _, and none of "
                                 f"{', '.join(sorted(FIXED_PLACEHOLDERS))}")
        return value

    @model_validator(mode="after")
    def _placeholders_known(self) -> _UserTask:
        known = FIXED_PLACEHOLDERS | set(self.options)
        for lang, prompt in self.prompts.items():
            for template in (prompt.instruction, prompt.completion or ""):
                unknown = sorted(set(PLACEHOLDER.findall(template)) - known)
                if unknown:
                    raise ValueError(
                        f"prompts.{lang} uses {{{unknown[0]}}}, which is neither an option "
                        f"of this task ([task.options.{unknown[0]}]) nor one of "
                        f"{', '.join('{' + k + '}' for k in sorted(FIXED_PLACEHOLDERS))}")
        return self

    def to_definition(self, origin: str) -> TaskDefinition:
        prompts = {
            lang.lower(): PromptTemplate(
                instruction=p.instruction,
                completion=p.completion or p.instruction + "\n\n{text}\n\n",
            )
            for lang, p in self.prompts.items()
        }
        return TaskDefinition(
            name=self.name, description=self.description or f"User task '{self.name}'.",
            prompts=prompts, temperature=self.temperature, max_tokens=self.max_tokens,
            top_p=self.top_p, quick_max_tokens=self.quick_max_tokens,
            long_text=self.long_text, prompt_lookup=self.prompt_lookup, origin=origin,
            options=tuple(o.to_option(name) for name, o in self.options.items()),
        )


def _problem(file: Path, task: str, field: str, problem: str) -> ConfigError:
    return ConfigError(f"{file}: task '{task}', field '{field}': {problem}. Fix that entry; "
                       "the other tasks still work.")


def load_user_tasks(path: Path) -> tuple[list[TaskDefinition], list[ConfigError]]:
    """The valid tasks of a tasks.toml and one ConfigError per problem (missing file: none)."""
    if not path.is_file():
        return [], []
    doc = read_toml(path)
    if isinstance(doc, FileProblem):
        why = f"cannot be read as TOML: {doc.error}"
        return [], [_problem(path, "(whole file)", doc.field, why)]
    raw_tasks = doc.get("task", [])
    if not isinstance(raw_tasks, list):
        return [], [_problem(path, "(whole file)", "task", "use [[task]] tables")]
    tasks: list[TaskDefinition] = []
    problems: list[ConfigError] = []
    for index, raw in enumerate(raw_tasks, start=1):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) and name else f"#{index}"
        try:
            tasks.append(_UserTask.model_validate(raw).to_definition(str(path)))
        except ValidationError as exc:
            problems.extend(_problem(path, label, field, msg) for field, msg in field_problems(exc))
    return tasks, problems


def register_user_tasks(register: Callable[[TaskDefinition], object],
                        path: Path) -> list[ConfigError]:
    """Hook: register the valid tasks of `path`; returns the problems (never raises).

    A task whose name is already taken (by a built-in or an earlier entry) is a problem,
    not an override.
    """
    tasks, problems = load_user_tasks(path)
    for task in tasks:
        try:
            register(task)
        except ConfigError as exc:
            problems.append(_problem(path, task.name, "name", str(exc).rstrip(".")))
    return problems
