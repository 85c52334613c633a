"""`localloom summarize|rewrite|counter|question|translate`, `localloom task NAME`, and
`localloom tasks`: run a task on text, a file, stdin or a web page, streaming the answer."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from localloom.catalog.builtin import STARTER_ID
from localloom.cli.history import cli_errors
from localloom.config import Settings
from localloom.errors import HistoryError, TaskError
from localloom.tasks import Document, TaskRegistry, TaskResult, fetch_url, read_file, read_stream

__all__ = ["register"]

_TEXT = typer.Argument(None, help="The text, or - to read standard input.")
_FILE = typer.Option(None, "--file", "-f", help="Read the text from this file.")
_URL = typer.Option(None, "--url", "-u", help="Fetch this web page and use its main text.")
_MODEL = typer.Option(None, "--model", "-m",
                      help=f"Model id or alias (default: {STARTER_ID}, the offline starter).")
_QUICK = typer.Option(False, "--quick", "-q", help="Shorter answer (128 tokens at most).")
_LANG = typer.Option(None, "--lang", help="Answer in this language (default: the text's).")
_SAVE = typer.Option(False, "--save", "-s", help="Save the result to the history.")
_VERBOSE = typer.Option(False, "--verbose", "-v", help="Print token counts and timings.")


def _document(text: str | None, file: Path | None, url: str | None) -> Document:
    if sum(x is not None for x in (text, file, url)) > 1:
        raise TaskError("Give the text one way only: TEXT, --file, --url, or - for stdin.")
    if file is not None:
        return read_file(file)
    if url is not None:
        return fetch_url(url)
    if text == "-" or (text is None and not sys.stdin.isatty()):
        return read_stream(sys.stdin)
    if text is None:
        raise TaskError("Give a TEXT, --file FILE, --url URL, or - to read standard input.")
    return Document(text=text)


def _load(engine: Any, model: str, err: Console) -> None:
    with err.status(f"Loading {escape(model)}…") as status:
        engine.load(model, progress_callback=lambda r: status.update(
            f"{escape(r.text)} ({r.progress:.0%})"))


def _report(result: TaskResult, err: Console) -> None:
    err.print(f"[dim]{result.model} · {result.chunks} part(s), {len(result.calls)} call(s) · "
              f"{result.prompt_tokens} prompt + {result.completion_tokens} completion tokens · "
              f"{result.timings.get('total_ms', 0) / 1000:.1f} s[/]")


def run_task(task: str, text: str | None, file: Path | None, url: str | None,
             model: str | None, quick: bool, lang: str | None, to: str | None, save: bool,
             verbose: bool) -> None:
    """Read the input, run the task with the answer streamed to stdout, optionally save."""
    from localloom.engine import Engine
    from localloom.tasks import TaskRunner

    err = Console(stderr=True)
    settings = Settings()
    with cli_errors():
        TaskRegistry.default(settings).get(task)  # an unknown task fails before any loading
        doc = _document(text, file, url)
        with Engine(settings) as engine:
            _load(engine, model or STARTER_ID, err)
            runner = TaskRunner(engine, settings=settings)

            def show(delta: str) -> None:
                sys.stdout.write(delta)
                sys.stdout.flush()

            def progress(done: int, total: int, message: str) -> None:
                err.print(f"[dim][{done}/{total}] {escape(message)}[/]")

            result = runner.run(task, doc.text, model=model or STARTER_ID, lang=lang, to=to,
                                quick=quick, source=doc.source, on_text=show,
                                on_progress=progress)
            sys.stdout.write("\n")
            if verbose:
                _report(result, err)
            if save:
                try:
                    saved = runner.save(result)
                except HistoryError as exc:
                    raise HistoryError(f"The answer above was not saved. {exc}") from exc
                err.print(f"Saved as {saved.id[:12]} (`localloom history show "
                          f"{saved.id[:12]}`).")


def _command(task: str, help_text: str, with_target: bool) -> Callable[..., None]:
    def command(text: str | None = _TEXT, file: Path | None = _FILE, url: str | None = _URL,
                model: str | None = _MODEL, quick: bool = _QUICK, lang: str | None = _LANG,
                to: str | None = typer.Option(None, "--to", hidden=not with_target,
                                              help="Translate into this language (es, en…)."),
                save: bool = _SAVE, verbose: bool = _VERBOSE) -> None:
        run_task(task, text, file, url, model, quick, lang, to, save, verbose)

    command.__doc__ = help_text
    return command


def task_command(name: str = typer.Argument(..., help="A task name (`localloom tasks`)."),
                 text: str | None = _TEXT, file: Path | None = _FILE, url: str | None = _URL,
                 model: str | None = _MODEL, quick: bool = _QUICK, lang: str | None = _LANG,
                 to: str | None = typer.Option(None, "--to", help="Target language."),
                 save: bool = _SAVE, verbose: bool = _VERBOSE) -> None:
    """Run any task by name, including your own from tasks.toml."""
    run_task(name, text, file, url, model, quick, lang, to, save, verbose)


def tasks_list() -> None:
    """List the tasks: built-in ones and yours from tasks.toml."""
    registry = TaskRegistry.default(Settings())
    out = Console()
    for task in registry:
        where = "" if task.origin == "builtin" else f" [dim]({escape(task.origin)})[/]"
        out.print(f"[bold]{task.name}[/]  {escape(task.description)}{where}")
    err = Console(stderr=True)
    for problem in registry.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}")


_BUILTIN_HELP = {
    "summarize": "Summarize text concisely and clearly (long texts: summary of summaries).",
    "rewrite": "Rewrite text with clearer wording and structure.",
    "counter": "Give a balanced counter-argument to the text.",
    "question": "Ask a thoughtful, interesting question about the text.",
    "translate": "Translate text into another language (--to es).",
}


def register(app: typer.Typer) -> None:
    """Add the task commands, `task` and `tasks` to the root app."""
    for name, help_text in _BUILTIN_HELP.items():
        app.command(name, help=help_text)(_command(name, help_text, name == "translate"))
    app.command("task")(task_command)
    app.command("tasks")(tasks_list)
