"""The order of a task's model calls, decided once for the sync and the async runner.

:func:`orchestrate` makes no call itself (sans-IO): it is a generator that yields what it
needs done and the events to pass on, and is sent back each need's answer:

- :class:`Split` -> the text's parts that fit one call (``list[str]``);
- :class:`Call` -> one streamed model call (its answer is not needed: send ``None``);
- :class:`MapCalls` -> one call per part, several at once, the driver reporting each
  finished part with :meth:`MapCalls.progress` -> the non-empty answers, in order;
- :class:`Progress`, :class:`TextDelta` -> events for the caller, as they are.

:class:`~localloom.tasks.runner.TaskRunner` drives it with the sync engine (threads for
the map calls), :class:`~localloom.tasks.aio.AsyncTaskRunner` with the async one (tasks).

Example::

    plan = orchestrate(job, text)
    answer = None
    while True:
        step = plan.send(answer)   # StopIteration: done
        answer = None
        if isinstance(step, Split):
            answer = chunks(step.text)
        ...
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from localloom.errors import TaskError
from localloom.tasks.definition import TaskDefinition
from localloom.tasks.events import Progress, TextDelta

__all__ = ["Call", "MapCalls", "Plan", "Run", "Split", "Step", "orchestrate"]


class Run(Protocol):
    """What the orchestration reads of a run (its task) and records (its part count)."""

    task: TaskDefinition
    chunks: int


@dataclass(frozen=True)
class Split:
    """Cut ``text`` into parts that each fit one call (one part if it fits whole)."""

    text: str


@dataclass(frozen=True)
class Call:
    """One model call on ``text``, its answer streamed as TextDelta events."""

    text: str
    stage: str  # "single", "chunk", "reduce"


@dataclass(frozen=True)
class MapCalls:
    """Summarize every part (stage "map", not streamed), several at once."""

    parts: list[str]
    done: int  # calls finished before these
    total: int
    label: str  # " (level 2)" from the second level on

    def progress(self, finished: int, index: int) -> Progress:
        """The event for the ``finished``-th call to end, the one on part ``index``."""
        return Progress(self.done + finished, self.total,
                        f"Summarized part {index + 1} of {len(self.parts)}{self.label}")


Step = Split | Call | MapCalls | Progress | TextDelta
Plan = Generator[Step, Any, None]


def orchestrate(job: Run, text: str) -> Plan:
    """The steps of ``job`` on ``text``: part by part, or map-reduce for summaries."""
    parts: list[str] = yield Split(text)
    job.chunks = len(parts)
    if len(parts) == 1:
        yield Call(parts[0], "single")
    elif job.task.long_text == "map_reduce":
        yield from _map_reduce(parts)
    else:
        yield from _per_chunk(parts)


def _per_chunk(chunks: list[str]) -> Plan:
    for index, chunk in enumerate(chunks):
        yield Progress(index, len(chunks), f"Part {index + 1} of {len(chunks)}")
        if index:
            yield TextDelta("\n\n")
        yield Call(chunk, "chunk")
    yield Progress(len(chunks), len(chunks), "Done")


def _map_reduce(parts: list[str]) -> Plan:
    """Summarize the parts, then their summaries, level by level, until one call can
    combine them."""
    done, total, level = 0, len(parts) + 1, 1
    while True:
        label = f" (level {level})" if level > 1 else ""
        yield Progress(done, total, f"Summarizing {len(parts)} parts{label}")
        summaries: list[str] = yield MapCalls(parts, done, total, label)
        done += len(parts)
        if not summaries:
            raise TaskError("The model returned only empty summaries, so there is nothing "
                            "to combine. Try another model.")
        next_parts: list[str] = yield Split("\n\n".join(summaries))
        if len(next_parts) == 1:
            yield Progress(done, total, "Combining the summaries")
            yield Call(next_parts[0], "reduce")
            yield Progress(total, total, "Done")
            return
        if len(next_parts) >= len(parts):
            raise TaskError(
                f"The summaries of {len(parts)} parts still need {len(next_parts)} parts, "
                "so summarizing them again would not finish. Use --quick (shorter "
                "summaries) or a model with a larger context."
            )
        total += len(next_parts)
        parts, level = next_parts, level + 1
