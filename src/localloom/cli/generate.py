"""`localloom run MODEL "prompt"` and `localloom chat MODEL`: generate from the command line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from localloom.cli._errors import fail as _fail
from localloom.config import Settings
from localloom.engine import Engine, InitProgressReport
from localloom.errors import ContextLengthExceededError, InvalidRequestError, LocalLoomError

__all__ = ["register"]

_CHAT_HELP = "Commands: /reset forgets the conversation, /stats shows speed, /exit quits."
# `run` is one answer on the command line: a base model (or a chat model that rambles) must
# stop by itself. `chat` keeps the engine's default: a conversation ends its own turns.
RUN_MAX_TOKENS = 256


@contextmanager
def _loaded(model: str) -> Iterator[Engine]:
    """An engine with ``model`` loaded, showing download/load progress on stderr."""
    engine = Engine(Settings())
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("Loading", total=1.0)

            def show(report: InitProgressReport) -> None:
                bar.update(task, completed=report.progress, description=escape(report.text))

            engine.reload(model, progress_callback=show)
        yield engine
    finally:
        engine.close()


def _params(max_tokens: int | None, temperature: float | None,
            seed: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    if seed is not None:
        params["seed"] = seed
    return params


def _prompt_text(prompt: str | None) -> str:
    """PROMPT itself, or standard input for `-` (or no PROMPT with text piped in)."""
    if prompt == "-" or (prompt is None and not sys.stdin.isatty()):
        text = sys.stdin.read()
        if not text.strip():
            raise InvalidRequestError("Standard input was empty. Pipe the prompt in "
                                      "(`echo 'Hi' | localloom run MODEL -`) or give it as PROMPT.")
        return text
    if prompt is None:
        raise InvalidRequestError('Give a PROMPT (`localloom run MODEL "Hi"`), or - to read it '
                                  "from standard input; `localloom chat MODEL` talks back and "
                                  "forth.")
    return prompt


def _stream_answer(engine: Engine, messages: list[dict[str, str]],
                   params: dict[str, Any]) -> str:
    """Print the answer as it comes; Ctrl-C stops it early. Returns the text shown."""
    parts: list[str] = []
    with engine.chat.completions.create(messages=messages, stream=True, **params) as stream:
        try:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        sys.stdout.write(choice.delta.content)
                        sys.stdout.flush()
        except KeyboardInterrupt:
            pass  # leaving the with-block cancels the generation
    sys.stdout.write("\n")
    return "".join(parts)


def _print_stats(engine: Engine) -> None:
    Console(stderr=True).print(f"[dim]{escape(engine.runtime_stats().text)}[/]")


def run(
    model: str = typer.Argument(..., help="Model id, alias or path to a .gguf file."),
    prompt: str | None = typer.Argument(
        None, help="What to ask, or - to read it from standard input."),
    max_tokens: int = typer.Option(RUN_MAX_TOKENS, "--max-tokens", min=1,
                                   help="Most tokens to write."),
    temperature: float | None = typer.Option(None, "--temperature",
                                             help="0 = always the likeliest word; up to 2."),
    seed: int | None = typer.Option(None, "--seed",
                                    help="Same seed, same prompt: the same answer."),
    system: str | None = typer.Option(None, "--system", help="Instructions for the model."),
    raw: bool = typer.Option(False, "--raw", help="Continue the prompt as plain text "
                                                  "instead of answering it as a chat."),
    verbose: bool = typer.Option(False, "--verbose", help="Print tokens/s afterwards."),
) -> None:
    """Answer PROMPT with MODEL, streaming the text to stdout."""
    params = _params(max_tokens, temperature, seed)
    try:
        if raw and system:
            raise InvalidRequestError("--system needs a chat, and --raw continues plain "
                                      "text: put the instructions at the start of the prompt "
                                      "instead, or drop --raw.")
        text = _prompt_text(prompt)
        with _loaded(model) as engine:
            if raw:
                for piece in engine.completions.create(prompt=text, stream=True, **params):
                    sys.stdout.write("".join(c.text for c in piece.choices))
                    sys.stdout.flush()
                sys.stdout.write("\n")
            else:
                start = [{"role": "system", "content": system}] if system else []
                _stream_answer(engine, [*start, {"role": "user", "content": text}], params)
            if verbose:
                _print_stats(engine)
    except LocalLoomError as exc:
        raise _fail(exc) from exc


def _chat_turn(engine: Engine, history: list[dict[str, str]], line: str,
               params: dict[str, Any], verbose: bool) -> None:
    history.append({"role": "user", "content": line})
    try:
        answer = _stream_answer(engine, history, params)
    except ContextLengthExceededError as exc:
        history.pop()
        Console(stderr=True).print(f"[yellow]{escape(str(exc))}[/] Type /reset to start over.")
        return
    history.append({"role": "assistant", "content": answer})
    if verbose:
        _print_stats(engine)


def chat(
    model: str = typer.Argument(..., help="Model id, alias or path to a .gguf file."),
    system: str | None = typer.Option(None, "--system", help="Instructions for the model."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Most tokens per answer."),
    temperature: float | None = typer.Option(None, "--temperature",
                                             help="0 = always the likeliest word; up to 2."),
    seed: int | None = typer.Option(None, "--seed",
                                    help="Same seed, same conversation: the same answers."),
    verbose: bool = typer.Option(False, "--verbose", help="Print tokens/s after answers."),
) -> None:
    """Talk with MODEL. /reset forgets, /stats shows speed, /exit (or Ctrl-D) quits."""
    params = _params(max_tokens, temperature, seed)
    start = [{"role": "system", "content": system}] if system else []
    console = Console()
    try:
        with _loaded(model) as engine:
            console.print(f"[dim]{escape(_CHAT_HELP)}[/]")
            history = list(start)
            while True:
                try:
                    line = console.input("[bold]>>> [/]").strip()
                except (EOFError, KeyboardInterrupt):
                    console.print()
                    return
                if line in ("/exit", "/quit", "/bye"):
                    return
                if line == "/reset":
                    history = list(start)
                    console.print("[dim]Conversation cleared.[/]")
                elif line == "/stats":
                    _print_stats(engine)
                elif line.startswith("/") or not line:
                    console.print(f"[dim]{escape(_CHAT_HELP)}[/]")
                else:
                    _chat_turn(engine, history, line, params, verbose)
    except LocalLoomError as exc:
        raise _fail(exc) from exc


def register(app: typer.Typer) -> None:
    """Add `run` and `chat` to the root app."""
    app.command("run")(run)
    app.command("chat")(chat)
