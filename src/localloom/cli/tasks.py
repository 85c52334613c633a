"""`localloom summarize|rewrite|counter|question|translate|write|proofread`, `localloom task
NAME`, and `localloom tasks`: run a task on text, a file, stdin or a web page, streaming
the answer. Task options are flags (--type, --length, --format, --tone, --count, --from,
--context) or, for any task, --option NAME=VALUE."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from localloom.catalog.builtin import STARTER_ID
from localloom.cli._errors import cli_errors
from localloom.config import Settings
from localloom.errors import HistoryError, TaskError
from localloom.tasks import (
    Document,
    TaskDefinition,
    TaskRegistry,
    TaskResult,
    fetch_url,
    read_file,
    read_stream,
)
from localloom.tasks.builtin import BUILTIN_TASKS

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
_CONTEXT = typer.Option(None, "--context", "-c",
                        help="Background for the model (who the text is for, what matters).")
_OPTION = typer.Option(None, "--option", "-o", metavar="NAME=VALUE",
                       help="Set any task option, e.g. -o length=long (`localloom tasks` "
                            "lists them).")
# The option flags of the built-in tasks, by option name (the flag is --NAME).
_FLAG_OPTIONS = ("type", "length", "format", "tone", "count", "from")


def _option_pairs(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise TaskError(f"--option takes NAME=VALUE (got '{pair}'), e.g. -o length=long.")
        out[name.strip()] = value.strip()
    return out


def _flag_help(name: str, tasks: list[TaskDefinition], named: bool) -> str:
    """One flag's help: each task's allowed values and default."""
    parts = []
    for task in tasks:
        option = next(o for o in task.options if o.name == name)
        where = f"{task.name}: " if named else ""
        parts.append(f"{where}{option.allowed()} (default {option.default})")
    return "; ".join(parts) + "."


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


def _print_corrections(result: TaskResult, err: Console) -> None:
    fixes = result.corrections or []
    err.print(f"[dim]{len(fixes)} correction(s)[/]")
    for fix in fixes:
        err.print(f"[dim]  {fix.start}-{fix.end}[/]  {escape(repr(fix.original))} → "
                  f"{escape(repr(fix.correction))}")


def run_task(task: str, text: str | None, file: Path | None, url: str | None,
             model: str | None, quick: bool, lang: str | None, to: str | None, save: bool,
             verbose: bool, options: Mapping[str, object] | None = None,
             context: str | None = None) -> None:
    """Read the input, run the task with the answer streamed to stdout, optionally save."""
    from localloom.engine import Engine
    from localloom.tasks import TaskRunner

    err = Console(stderr=True)
    settings = Settings()
    with cli_errors():
        from localloom.tasks.options import resolve_options

        # An unknown task or option fails before any loading.
        resolve_options(TaskRegistry.default(settings).get(task), options)
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
                                quick=quick, source=doc.source, options=options,
                                context=context, on_text=show, on_progress=progress)
            sys.stdout.write("\n")
            if result.corrections is not None:
                _print_corrections(result, err)
            if verbose:
                _report(result, err)
            if save:
                try:
                    saved = runner.save(result)
                except HistoryError as exc:
                    raise HistoryError(f"The answer above was not saved. {exc}") from exc
                err.print(f"Saved as {saved.id[:12]} (`localloom history show "
                          f"{saved.id[:12]}`).")


def _flags(tasks: list[TaskDefinition], named: bool = False) -> dict[str, Any]:
    """typer options for the option flags; those no task in `tasks` has are hidden."""
    flags = {}
    for name in _FLAG_OPTIONS:
        having = [t for t in tasks if any(o.name == name for o in t.options)]
        flags[name] = typer.Option(None, f"--{name}", hidden=not having,
                                   help=_flag_help(name, having, named) if having else "")
    return flags


def _command(task: TaskDefinition, help_text: str) -> Callable[..., None]:
    flags = _flags([task])

    def command(text: str | None = _TEXT, file: Path | None = _FILE, url: str | None = _URL,
                model: str | None = _MODEL, quick: bool = _QUICK, lang: str | None = _LANG,
                to: str | None = typer.Option(None, "--to", hidden=not task.needs_target,
                                              help="Translate into this language (es, en…)."),
                type_: str | None = flags["type"], length: str | None = flags["length"],
                format_: str | None = flags["format"], tone: str | None = flags["tone"],
                count: str | None = flags["count"], from_: str | None = flags["from"],
                context: str | None = _CONTEXT, option: list[str] | None = _OPTION,
                save: bool = _SAVE, verbose: bool = _VERBOSE) -> None:
        chosen = {"type": type_, "length": length, "format": format_, "tone": tone,
                  "count": count, "from": from_}
        with cli_errors():
            options = {**{k: v for k, v in chosen.items() if v is not None},
                       **_option_pairs(option)}
        run_task(task.name, text, file, url, model, quick, lang, to, save, verbose,
                 options, context)

    command.__doc__ = help_text
    return command


_ANY_FLAGS = _flags(list(BUILTIN_TASKS), named=True)


def task_command(name: str = typer.Argument(..., help="A task name (`localloom tasks`)."),
                 text: str | None = _TEXT, file: Path | None = _FILE, url: str | None = _URL,
                 model: str | None = _MODEL, quick: bool = _QUICK, lang: str | None = _LANG,
                 to: str | None = typer.Option(None, "--to", help="Target language."),
                 type_: str | None = _ANY_FLAGS["type"],
                 length: str | None = _ANY_FLAGS["length"],
                 format_: str | None = _ANY_FLAGS["format"],
                 tone: str | None = _ANY_FLAGS["tone"], count: str | None = _ANY_FLAGS["count"],
                 from_: str | None = _ANY_FLAGS["from"], context: str | None = _CONTEXT,
                 option: list[str] | None = _OPTION, save: bool = _SAVE,
                 verbose: bool = _VERBOSE) -> None:
    """Run any task by name, including your own from tasks.toml."""
    chosen = {"type": type_, "length": length, "format": format_, "tone": tone,
              "count": count, "from": from_}
    with cli_errors():
        options = {**{k: v for k, v in chosen.items() if v is not None},
                   **_option_pairs(option)}
    run_task(name, text, file, url, model, quick, lang, to, save, verbose, options, context)


def tasks_list() -> None:
    """List the tasks: built-in ones and yours from tasks.toml."""
    registry = TaskRegistry.default(Settings())
    out = Console()
    for task in registry:
        where = "" if task.origin == "builtin" else f" [dim]({escape(task.origin)})[/]"
        out.print(f"[bold]{task.name}[/]  {escape(task.description)}{where}")
        for option in task.options:
            out.print(f"  [dim]{option.name}: {escape(option.allowed())} "
                      f"(default {option.default})[/]")
    err = Console(stderr=True)
    for problem in registry.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}")


_BUILTIN_HELP = {
    "summarize": "Summarize text: key points, a TL;DR, a teaser or a headline (long texts: "
                 "summary of summaries).",
    "rewrite": "Rewrite text with clearer wording and structure.",
    "counter": "Give a balanced counter-argument to the text.",
    "question": "Ask a thoughtful, interesting question about the text.",
    "translate": "Translate text into another language (--to es; --from or detected).",
    "write": "Write new text for a request: an email, a post, a note (--tone, --length).",
    "proofread": "Correct spelling and grammar; lists each correction with its position.",
}


def register(app: typer.Typer) -> None:
    """Add the task commands, `task` and `tasks` to the root app."""
    for task in BUILTIN_TASKS:
        help_text = _BUILTIN_HELP[task.name]
        app.command(task.name, help=help_text)(_command(task, help_text))
    app.command("task")(task_command)
    app.command("tasks")(tasks_list)
