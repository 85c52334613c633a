"""How every CLI command reports a LocalLoom error: one red line on stderr, exit code 1."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from localloom.errors import LocalLoomError


def fail(exc: LocalLoomError) -> typer.Exit:
    """Print `exc` for the user (no traceback) and return the Exit to raise."""
    Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(1)
