"""How every CLI command reports a LocalLoom error: one red line on stderr, exit code 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from localloom.errors import LocalLoomError

__all__ = ["cli_errors", "fail", "print_error"]


def print_error(message: str) -> None:
    """One red `error:` line on stderr, never hard-wrapped (paths and commands stay whole)."""
    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def fail(exc: LocalLoomError) -> typer.Exit:
    """Print `exc` for the user (no traceback) and return the Exit to raise."""
    print_error(str(exc))
    return typer.Exit(1)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Print LocalLoom errors with :func:`print_error` and exit with status 1."""
    try:
        yield
    except LocalLoomError as exc:
        raise fail(exc) from exc
