"""The `localloom` command. Thin: parse, call the library, print."""

from __future__ import annotations

import typer

from localloom.cli import (
    doctor,
    extension,
    generate,
    history,
    models,
    running,
    serve,
    show,
    store,
    tasks,
)
from localloom.cli._help import tidy_help

__all__ = ["app", "main"]


def _build_app() -> typer.Typer:
    app = typer.Typer(
        name="localloom",
        help="Run language models privately on your own machine.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def print_version(value: bool) -> None:
        if value:
            from localloom._version import __version__

            typer.echo(f"localloom {__version__}")
            raise typer.Exit()

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", is_eager=True, expose_value=True, callback=print_version,
            help="Print the version and exit."),
    ) -> None:
        """Run language models privately on your own machine."""

    for module in (models, store, generate, tasks, history, serve, doctor, extension,
                   running, show):
        module.register(app)
    return app


app = _build_app()


def main() -> None:
    """Console-script entry point."""
    # `--version` is eager: it answers before the group asks for a command.
    tidy_help(typer.main.get_command(app))(prog_name="localloom")
