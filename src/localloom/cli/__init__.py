"""The `localloom` command. Thin: parse, call the library, print."""

from __future__ import annotations

import typer

from localloom.cli import doctor, generate, history, models, serve, store, tasks

__all__ = ["app", "main"]


def _build_app() -> typer.Typer:
    app = typer.Typer(
        name="localloom",
        help="Run language models privately on your own machine.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    ) -> None:
        """Run language models privately on your own machine."""
        if version:
            from localloom._version import __version__

            typer.echo(f"localloom {__version__}")
            raise typer.Exit()

    for module in (models, store, generate, tasks, history, serve, doctor):
        module.register(app)
    return app


app = _build_app()


def main() -> None:
    """Console-script entry point."""
    app()
