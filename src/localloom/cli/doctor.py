"""`localloom doctor`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from localloom.config import Settings
from localloom.doctor import CheckStatus, run_checks

_STYLE = {CheckStatus.OK: "green", CheckStatus.WARN: "yellow", CheckStatus.FAIL: "red",
          CheckStatus.SKIP: "dim"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    model: str = typer.Option("starter", "--model",
                              help="Model id or GGUF file for the trial load ('' skips it)."),
) -> None:
    """Check Python, llama.cpp, CPU/GPU, RAM, disk, the model cache, the Hub, and a trial
    load of a model (the starter by default) with the backend config it needs."""
    checks = run_checks(Settings(), model=model or None)
    if as_json:
        typer.echo(json.dumps([{"name": c.name, "status": c.status.value, "detail": c.detail,
                                "fix": c.fix} for c in checks], indent=2))
    else:
        table = Table(title="localloom doctor")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")
        for c in checks:
            table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status.value}[/]", c.detail, c.fix)
        Console().print(table)
    if any(c.status is CheckStatus.FAIL for c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `doctor` to the root app."""
    app.command("doctor")(doctor)
