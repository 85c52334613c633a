"""`localloom summarize|rewrite|counter|question|translate|task|tasks` on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from localloom.cli import history as history_cli
from localloom.cli import tasks as tasks_cli
from localloom.config import Settings
from localloom.history import HistoryStore, SavedResult


@pytest.fixture()
def app() -> typer.Typer:
    root = typer.Typer()
    tasks_cli.register(root)
    history_cli.register(root)
    return root


def _saved() -> list[SavedResult]:
    with HistoryStore.for_settings(Settings()) as store:
        return store.list()


def test_summarize_text_streams_an_answer_and_saves_it(app: typer.Typer,
                                                       tiny_gguf: Path) -> None:
    result = CliRunner().invoke(app, ["summarize", "The heron waits by the water.",
                                      "--model", str(tiny_gguf), "--quick", "--save"])
    assert result.exit_code == 0, result.output
    assert "Saved as" in result.stderr
    [saved] = _saved()
    assert saved.task == "summarize" and saved.original == "The heron waits by the water."
    assert saved.result == result.stdout.strip()  # what was shown is what was saved
    assert saved.parameters["max_tokens"] == 128


def test_file_and_stdin_inputs_are_used_and_the_file_is_the_source(
        app: typer.Typer, tiny_gguf: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("Herons nest in colonies near the river.", encoding="utf-8")
    from_file = CliRunner().invoke(app, ["question", "--file", str(notes), "--model",
                                         str(tiny_gguf), "--quick", "--save"])
    assert from_file.exit_code == 0, from_file.output
    from_stdin = CliRunner().invoke(app, ["rewrite", "-", "--model", str(tiny_gguf), "--quick",
                                          "--save"], input="Texto desde la entrada estándar.")
    assert from_stdin.exit_code == 0, from_stdin.output
    by_task = {r.task: r for r in _saved()}
    assert by_task["question"].source == str(notes)
    assert by_task["rewrite"].original == "Texto desde la entrada estándar."
    assert by_task["rewrite"].source is None


def test_url_input_uses_the_pages_main_text(app: typer.Typer, tiny_gguf: Path,
                                            web: str) -> None:
    result = CliRunner().invoke(app, ["counter", "--url", f"{web}/article.html", "--model",
                                      str(tiny_gguf), "--quick", "--save"])
    assert result.exit_code == 0, result.output
    [saved] = _saved()
    assert saved.source == f"{web}/article.html"
    assert "grey heron stands motionless" in saved.original and "Log in" not in saved.original


def test_url_to_an_image_fails_with_the_reason(app: typer.Typer, tiny_gguf: Path,
                                               web: str) -> None:
    result = CliRunner().invoke(app, ["summarize", "--url", f"{web}/photo.png", "--model",
                                      str(tiny_gguf)])
    assert result.exit_code == 1
    assert "image/png" in result.stderr and "Traceback" not in result.output


def test_translate_needs_a_target_language(app: typer.Typer, tiny_gguf: Path) -> None:
    result = CliRunner().invoke(app, ["translate", "Hello there, friend.", "--model",
                                      str(tiny_gguf)])
    assert result.exit_code == 1 and "--to es" in result.stderr
    ok = CliRunner().invoke(app, ["translate", "Hello there, friend.", "--to", "es",
                                  "--model", str(tiny_gguf), "--quick"])
    assert ok.exit_code == 0, ok.output


def test_giving_the_text_two_ways_is_refused(app: typer.Typer, tmp_path: Path) -> None:
    notes = tmp_path / "n.txt"
    notes.write_text("x")
    result = CliRunner().invoke(app, ["summarize", "some text", "--file", str(notes)])
    assert result.exit_code == 1 and "one way only" in result.stderr


def test_user_tasks_are_listed_and_run_by_name(app: typer.Typer, tiny_gguf: Path) -> None:
    path = Settings().config_dir / "tasks.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[[task]]\nname = "tldr"\ndescription = "One-line TL;DR"\n'
                    '[task.prompts.en]\ninstruction = "TL;DR:"\n', encoding="utf-8")
    listing = CliRunner().invoke(app, ["tasks"])
    assert listing.exit_code == 0
    assert "tldr" in listing.stdout and "summarize" in listing.stdout
    result = CliRunner().invoke(app, ["task", "tldr", "Herons wait.", "--model",
                                      str(tiny_gguf), "--quick", "--save"])
    assert result.exit_code == 0, result.output
    assert [r.task for r in _saved()] == ["tldr"]
    unknown = CliRunner().invoke(app, ["task", "tldrr", "Herons wait."])
    assert unknown.exit_code == 1 and "Did you mean 'tldr'" in unknown.stderr
