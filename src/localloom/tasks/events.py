"""The events a running task streams before its :class:`~localloom.tasks.runner.TaskResult`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Progress", "TextDelta"]


@dataclass(frozen=True)
class TextDelta:
    """New answer text, as it is generated."""

    text: str


@dataclass(frozen=True)
class Progress:
    """`done` of `total` model calls finished (total grows if summaries need another level)."""

    done: int
    total: int
    text: str
