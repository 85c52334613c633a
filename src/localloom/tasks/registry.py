"""`TaskRegistry`: tasks by name; registering a taken name is an error.

Built-in and user tasks go through the same `register_task`, which also works as a
decorator on a function that returns a definition.

Example::

    registry = TaskRegistry.default(settings)     # built-ins + the user's tasks.toml
    registry.get("summarize")

    @registry.register_task
    def shout() -> TaskDefinition:
        return TaskDefinition(name="shout", description="...", prompts={...})
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import TypeVar, overload

from localloom.config import Settings
from localloom.errors import ConfigError, TaskError
from localloom.tasks.builtin import register_builtin_tasks
from localloom.tasks.definition import TaskDefinition
from localloom.tasks.user import TASKS_FILENAME, register_user_tasks

__all__ = ["TaskRegistry"]

_F = TypeVar("_F", bound=Callable[[], TaskDefinition])


class TaskRegistry:
    """Every task that can run, by unique name."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self.problems: list[ConfigError] = []

    @classmethod
    def default(cls, settings: Settings | None = None) -> TaskRegistry:
        """Built-in tasks, then the valid tasks of the config dir's tasks.toml.

        Problems in tasks.toml are kept in :attr:`problems` rather than raised.
        """
        settings = settings or Settings()
        registry = cls()
        register_builtin_tasks(registry.register_task)
        registry.problems = register_user_tasks(registry.register_task,
                                                settings.config_dir / TASKS_FILENAME)
        return registry

    @overload
    def register_task(self, task: TaskDefinition) -> TaskDefinition: ...

    @overload
    def register_task(self, task: _F) -> _F: ...

    def register_task(self, task: TaskDefinition | _F) -> TaskDefinition | _F:
        """Add a task (or, as a decorator, the task a function returns).

        Raises ConfigError if the name is already registered.
        """
        definition = task if isinstance(task, TaskDefinition) else task()
        existing = self._tasks.get(definition.name)
        if existing is not None:
            raise ConfigError(
                f"A task named '{definition.name}' is already registered (from "
                f"{existing.origin}); give the new task another name."
            )
        self._tasks[definition.name] = definition
        return task

    def get(self, name: str) -> TaskDefinition:
        """The task called `name`; TaskError with suggestions if there is none."""
        try:
            return self._tasks[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._tasks), n=2)
            hint = (" Did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close else ""
            raise TaskError(
                f"There is no task called '{name}'.{hint} Tasks: {', '.join(self._tasks)}. "
                "Add your own in tasks.toml in the config folder."
            ) from None

    def names(self) -> list[str]:
        """Task names in registration order (built-ins first)."""
        return list(self._tasks)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._tasks

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)
