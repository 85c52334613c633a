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
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from localloom.errors import ConfigError
from localloom.tasks.definition import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
    QUICK_MAX_TOKENS,
    LongText,
    PromptTemplate,
    TaskDefinition,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

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
        )


def _problem(file: Path, task: str, field: str, problem: str) -> ConfigError:
    return ConfigError(f"{file}: task '{task}', field '{field}': {problem}. Fix that entry; "
                       "the other tasks still work.")


def load_user_tasks(path: Path) -> tuple[list[TaskDefinition], list[ConfigError]]:
    """The valid tasks of a tasks.toml and one ConfigError per problem (missing file: none)."""
    if not path.is_file():
        return [], []
    try:
        doc: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [], [_problem(path, "(whole file)", "(file)", f"cannot be read as TOML: {exc}")]
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
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "(entry)"
                problems.append(_problem(path, label, field, err["msg"]))
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
