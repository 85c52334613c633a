"""The task orchestration on its own: the steps it asks for, given the answers it is sent.

Both runners (sync and async) drive this one generator; here it is driven by hand, with
the parts and summaries a model run would give, so the order of calls, the progress
events and the refusals are checked without a model."""

from __future__ import annotations

from typing import Any

import pytest

from localloom.config import Settings
from localloom.errors import TaskError
from localloom.tasks import Progress, TextDelta
from localloom.tasks.orchestration import Call, MapCalls, Split, Step, orchestrate
from localloom.tasks.prompts import PromptPlan
from localloom.tasks.registry import TaskRegistry
from localloom.tasks.runner import _Job


def _job(task: str) -> _Job:
    definition = TaskRegistry.default(Settings()).get(task)
    plan = PromptPlan(task=definition, style="chat", answer_language="en",
                      source_language="en")
    return _Job(task=definition, model="m", n_ctx=512, plan=plan, sampling={}, budget=100)


def _drive(job: _Job, text: str, answers: dict[str, list[Any]]) -> list[Step]:
    """Every step of the plan; a Split or a MapCalls takes the next answer of its kind."""
    plan = orchestrate(job, text)
    steps: list[Step] = []
    answer: Any = None
    while True:
        try:
            step = plan.send(answer)
        except StopIteration:
            return steps
        steps.append(step)
        needs_answer = isinstance(step, Split | MapCalls)
        answer = answers[type(step).__name__].pop(0) if needs_answer else None


def test_a_text_that_fits_is_one_streamed_call() -> None:
    job = _job("rewrite")
    assert _drive(job, "short", {"Split": [["short"]]}) == [Split("short"),
                                                           Call("short", "single")]
    assert job.chunks == 1


def test_other_tasks_answer_part_by_part_with_progress_between() -> None:
    job = _job("rewrite")
    steps = _drive(job, "a b", {"Split": [["a", "b"]]})
    assert steps == [Split("a b"), Progress(0, 2, "Part 1 of 2"), Call("a", "chunk"),
                     Progress(1, 2, "Part 2 of 2"), TextDelta("\n\n"), Call("b", "chunk"),
                     Progress(2, 2, "Done")]
    assert job.chunks == 2


def test_summaries_are_mapped_level_by_level_then_reduced() -> None:
    job = _job("summarize")
    parts = ["p1", "p2", "p3", "p4"]
    steps = _drive(job, "long", {"Split": [parts, ["s1", "s2"], ["t"]],
                                 "MapCalls": [["s1", "s2", "s3", "s4"], ["t1", "t2"]]})
    first = MapCalls(parts, 0, 5, "")
    second = MapCalls(["s1", "s2"], 4, 7, " (level 2)")
    assert steps == [
        Split("long"), Progress(0, 5, "Summarizing 4 parts"), first,
        Split("s1\n\ns2\n\ns3\n\ns4"), Progress(4, 7, "Summarizing 2 parts (level 2)"), second,
        Split("t1\n\nt2"), Progress(6, 7, "Combining the summaries"), Call("t", "reduce"),
        Progress(7, 7, "Done")]
    assert job.chunks == 4
    # what a driver reports as each map call ends, in the order they end
    assert second.progress(1, 1) == Progress(5, 7, "Summarized part 2 of 2 (level 2)")


def test_only_empty_summaries_are_refused() -> None:
    with pytest.raises(TaskError, match="only empty summaries"):
        _drive(_job("summarize"), "long", {"Split": [["p1", "p2"]], "MapCalls": [[]]})


def test_summaries_that_do_not_shrink_are_refused_rather_than_looping() -> None:
    with pytest.raises(TaskError, match="would not finish"):
        _drive(_job("summarize"), "long", {"Split": [["p1", "p2"], ["q1", "q2"]],
                                           "MapCalls": [["s1", "s2"]]})
