"""Task options end to end on the tiny model: prompts, limits on whatever the model writes,
user tasks that declare options in tasks.toml, and the CLI flags.

The tiny model writes random text, which is the point here: the limits must hold for any
answer. Whether the starter model answers well within them is tests/tasks/
test_task_options_starter.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from localloom.cli import history as history_cli
from localloom.cli import tasks as tasks_cli
from localloom.config import Settings
from localloom.errors import InvalidRequestError
from localloom.history import HistoryStore, SavedResult
from localloom.tasks import TaskRegistry, TaskRunner
from localloom.tasks.checks import violations
from localloom.tasks.corrections import apply_corrections
from localloom.tasks.prompts import PromptPlan

TEXT = ("The grey heron stands motionless at the edge of the water for long minutes. "
        "In winter the herons gather in large colonies in the tall trees near the river. "
        "Local volunteers count the nests every spring.")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from localloom.engine import Engine

    with Engine(Settings()) as eng:
        yield eng


@pytest.fixture()
def runner(engine: Any, tmp_path: Path) -> Iterator[TaskRunner]:
    store = HistoryStore(tmp_path / "history.sqlite3")
    yield TaskRunner(engine, store, Settings())
    store.close()


def _plan(task: str, style: str = "completion", **options: Any) -> PromptPlan:
    definition = TaskRegistry.default(Settings()).get(task)
    return PromptPlan(task=definition, style=style,  # type: ignore[arg-type]
                      answer_language="en", source_language="en", options=options)


def _text(plan: PromptPlan) -> str:
    prompt = plan.build("Herons wait.")
    return prompt.text or (prompt.messages or [{}])[0]["content"]


def test_each_option_changes_the_completion_template_and_the_chat_instruction() -> None:
    variants: list[tuple[str, dict[str, object]]]
    variants = [("summarize", {"type": t}) for t in ("key-points", "tldr", "teaser",
                                                      "headline")]
    variants += [("summarize", {"length": n}) for n in ("short", "medium", "long")]
    variants += [("summarize", {"type": "key-points", "format": f})
                 for f in ("markdown", "plain-text")]
    variants += [("rewrite", {"tone": t}) for t in ("more-formal", "as-is", "more-casual")]
    variants += [("rewrite", {"length": n}) for n in ("shorter", "as-is", "longer")]
    variants += [("rewrite", {"format": f}) for f in ("as-is", "markdown", "plain-text")]
    variants += [("counter", {"length": n}) for n in ("short", "medium", "long")]
    variants += [("question", {"count": n}) for n in (1, 2, 5)]
    variants += [("write", {"tone": t}) for t in ("formal", "neutral", "casual")]
    variants += [("write", {"length": n}) for n in ("short", "medium", "long")]
    for style in ("completion", "chat"):
        seen: dict[str, set[str]] = {}
        for task, options in variants:
            key = f"{task}:{','.join(options)}"
            seen.setdefault(key, set()).add(_text(_plan(task, style, **options)))
        for key, texts in seen.items():
            count = sum(1 for t, o in variants if f"{t}:{','.join(o)}" == key)
            assert len(texts) == count, f"{style} {key}: some values give the same prompt"


def test_options_choose_the_stops_and_the_answer_rules() -> None:
    headline = _plan("summarize", type="headline").build("x")
    assert headline.text is not None and headline.text.endswith("Headline:")
    assert "\n" in headline.stop and headline.rules.max_lines == 1
    points = _plan("summarize", type="key-points", length="medium", format="plain-text")
    prompt = points.build("x")
    assert prompt.text is not None and prompt.text.endswith("The five key points:\n•")
    assert prompt.stop == ["\n\n"]  # a list ends at a blank line, not a line break
    assert (prompt.rules.max_items, prompt.rules.text_format) == (5, "plain-text")
    shorter = _plan("rewrite", length="shorter").build(" ".join(["word"] * 50))
    assert shorter.rules.max_words == 40


def test_context_goes_before_the_prompt_for_both_kinds_of_model() -> None:
    definition = TaskRegistry.default(Settings()).get("write")
    for style in ("completion", "chat"):
        plan = PromptPlan(task=definition, style=style,  # type: ignore[arg-type]
                          answer_language="en", source_language="en",
                          context="The reader is a child.")
        assert _text(plan).startswith("Context: The reader is a child.\n\n")


@pytest.mark.parametrize(("task", "options"), [
    ("summarize", {"type": "headline"}),
    ("summarize", {"type": "key-points", "length": "short"}),
    ("summarize", {"type": "key-points", "format": "plain-text"}),
    ("summarize", {"type": "tldr", "length": "medium", "format": "plain-text"}),
    ("rewrite", {"length": "shorter", "format": "plain-text"}),
    ("counter", {"length": "short"}),
    ("question", {"count": 3}),
    ("write", {"length": "short", "format": "plain-text"}),
])
@pytest.mark.parametrize("model", ["chat", "base"])
def test_whatever_the_model_writes_the_answer_keeps_the_options_limits(
        runner: TaskRunner, tiny_gguf: Path, tiny_gguf_no_template: Path, task: str,
        options: dict[str, Any], model: str) -> None:
    path = tiny_gguf if model == "chat" else tiny_gguf_no_template
    deltas: list[str] = []
    for seed in (1, 2):  # two answers, so that a lucky one does not hide a broken rule
        deltas.clear()
        result = runner.run(task, TEXT, model=str(path), options=options, seed=seed,
                            temperature=1.0, on_text=deltas.append)
        rules = runner.registry.get(task).option_values(result.options, "en")[1]
        assert violations(result.text, rules.for_input(len(TEXT.split()))) == []
        assert result.text == "".join(deltas).strip()  # what streamed is the answer
        assert result.parameters["options"] == result.options
        assert all(result.options[k] == v for k, v in options.items())


def test_a_bad_option_is_refused_before_any_model_is_loaded(runner: TaskRunner) -> None:
    with pytest.raises(InvalidRequestError, match="use key-points, tldr, teaser, headline"):
        runner.run("summarize", TEXT, model="no-such-model", options={"type": "poem"})


def test_proofread_corrections_rebuild_the_corrected_text(runner: TaskRunner,
                                                        tiny_gguf: Path) -> None:
    original = "The heron stand motionless at teh edge of the water."
    result = runner.run("proofread", original, model=str(tiny_gguf), seed=3)
    assert result.corrections is not None
    assert apply_corrections(original, result.corrections) == result.text
    for fix in result.corrections:
        assert original[fix.start:fix.end] == fix.original


def test_translate_from_overrides_detection(runner: TaskRunner, tiny_gguf: Path) -> None:
    detected = runner.run("translate", TEXT, model=str(tiny_gguf), to="es", max_tokens=4)
    assert detected.source_language == "en"
    stated = runner.run("translate", TEXT, model=str(tiny_gguf), to="es", max_tokens=4,
                        options={"from": "French"})
    assert stated.source_language == "fr" and stated.options["from"] == "French"


def _write_tasks(text: str) -> Path:
    path = Settings().config_dir / "tasks.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


HAIKU_TOML = '''
[[task]]
name = "haiku"
description = "A haiku about the text"
[task.options.mood]
choices = ["calm", "sad"]
default = "calm"
description = "The haiku's mood"
phrases.en = { sad = "melancholy" }
limits.calm = { max_lines = 3, format = "plain-text" }
limits.sad = { max_lines = 1 }
[task.options.lines]
kind = "count"
minimum = 1
maximum = 3
[task.prompts.en]
instruction = "Write a {mood} haiku about the following text:"
completion = "Text:\\n{text}\\n\\nA {mood} haiku ({lines} lines):"
'''


def test_user_tasks_declare_options_and_use_them_in_their_templates(
        runner: TaskRunner, tiny_gguf_no_template: Path) -> None:
    _write_tasks(HAIKU_TOML)
    registry = TaskRegistry.default(Settings())
    assert registry.problems == []
    haiku = registry.get("haiku")
    assert [o.describe() for o in haiku.options] == [
        {"name": "mood", "kind": "choice", "description": "The haiku's mood",
         "default": "calm", "choices": ["calm", "sad"]},
        {"name": "lines", "kind": "count", "description": "Option 'lines'.", "default": 1,
         "minimum": 1, "maximum": 3}]
    plan = PromptPlan(task=haiku, style="completion", answer_language="en",
                      source_language="en", options={"mood": "sad", "lines": 2})
    assert plan.build("Herons.").text == "Text:\nHerons.\n\nA melancholy haiku (2 lines):"
    run = TaskRunner(runner.engine, settings=Settings())
    for mood, lines in (("sad", 1), ("calm", 3)):
        result = run.run("haiku", TEXT, model=str(tiny_gguf_no_template), seed=2,
                         options={"mood": mood}, temperature=1.0)
        assert len(result.text.splitlines()) <= lines
        assert result.calls[0].prompt_tokens > 0
    with pytest.raises(InvalidRequestError, match="use calm, sad"):
        run.run("haiku", TEXT, model=str(tiny_gguf_no_template), options={"mood": "angry"})


def test_bad_option_declarations_are_reported_by_field() -> None:
    path = _write_tasks('''
[[task]]
name = "nochoices"
[task.options.mood]
default = "x"
[task.prompts.en]
instruction = "Do it {mood}:"

[[task]]
name = "undeclared"
[task.prompts.en]
instruction = "Write a {mood} poem:"

[[task]]
name = "straylimit"
[task.options.size]
choices = ["s", "m"]
limits.xl = { max_lines = 1 }
[task.prompts.en]
instruction = "Do it {size}:"

[[task]]
name = "reserved"
[task.options.text]
choices = ["a"]
[task.prompts.en]
instruction = "Do it:"
''')
    registry = TaskRegistry.default(Settings())
    problems = [str(p) for p in registry.problems]
    assert len(problems) == 4, problems
    assert all(p.startswith(str(path)) for p in problems)
    assert "task 'nochoices', field 'options.mood'" in problems[0]
    assert "choices" in problems[0]
    assert "task 'undeclared'" in problems[1] and "{mood}" in problems[1]
    assert "[task.options.mood]" in problems[1]
    assert "task 'straylimit'" in problems[2] and "'xl'" in problems[2]
    assert "task 'reserved'" in problems[3] and "'text' cannot name an option" in problems[3]
    assert not any(name in registry for name in ("nochoices", "undeclared", "straylimit",
                                                 "reserved"))


# -- the CLI ---------------------------------------------------------------------------


@pytest.fixture()
def app() -> typer.Typer:
    root = typer.Typer()
    tasks_cli.register(root)
    history_cli.register(root)
    return root


def _saved() -> list[SavedResult]:
    with HistoryStore.for_settings(Settings()) as store:
        return store.list()


def test_cli_flags_set_the_options_and_they_are_saved(app: typer.Typer,
                                                      tiny_gguf: Path) -> None:
    result = CliRunner().invoke(app, ["summarize", TEXT, "--type", "key-points", "--length",
                                      "short", "--format", "plain-text", "--context",
                                      "For a nature blog.", "--model", str(tiny_gguf),
                                      "--save"])
    assert result.exit_code == 0, result.output
    [saved] = _saved()
    assert saved.parameters["options"] == {"type": "key-points", "length": "short",
                                           "format": "plain-text"}
    assert saved.parameters["context"] == "For a nature blog."
    lines = result.stdout.strip().splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("• ") for line in lines)
    question = CliRunner().invoke(app, ["task", "question", TEXT, "-o", "count=2", "--model",
                                        str(tiny_gguf)])
    assert question.exit_code == 0, question.output
    assert len(question.stdout.strip().splitlines()) <= 2


def test_cli_bad_options_say_what_is_allowed(app: typer.Typer) -> None:
    bad = CliRunner().invoke(app, ["rewrite", TEXT, "--tone", "angry"])
    assert bad.exit_code == 1
    assert "more-formal, as-is, more-casual" in bad.stderr and "Traceback" not in bad.output
    wrong = CliRunner().invoke(app, ["counter", TEXT, "--type", "headline"])
    assert wrong.exit_code == 1 and "Its options: length" in wrong.stderr
    pair = CliRunner().invoke(app, ["task", "summarize", TEXT, "-o", "length"])
    assert pair.exit_code == 1 and "NAME=VALUE" in pair.stderr


def test_cli_proofread_prints_the_corrections(app: typer.Typer, tiny_gguf: Path) -> None:
    result = CliRunner().invoke(app, ["proofread", "Teh heron waits.", "--model",
                                      str(tiny_gguf)])
    assert result.exit_code == 0, result.output
    assert "correction(s)" in result.stderr


def test_tasks_lists_the_options_and_their_values(app: typer.Typer) -> None:
    listing = CliRunner().invoke(app, ["tasks"])
    assert listing.exit_code == 0
    assert "type: key-points, tldr, teaser, headline (default tldr)" in listing.stdout
    assert "write" in listing.stdout and "proofread" in listing.stdout
