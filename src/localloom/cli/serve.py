"""`localloom serve`: the local server (OpenAI API, management API, web UI)."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from localloom.cli._errors import fail
from localloom.config import Settings
from localloom.errors import LocalLoomError


def register(app: typer.Typer) -> None:
    """Add `serve` to the root app."""

    @app.command()
    def serve(
        host: str | None = typer.Option(
            None, "--host", help="Address to bind (default 127.0.0.1)."),
        port: int | None = typer.Option(
            None, "--port", help="Port (default 8765; 0 picks a free one)."),
        allow_remote: bool = typer.Option(
            False, "--allow-remote",
            help="Allow a non-loopback --host. Other machines can then connect; the token "
                 "is still required."),
        open_browser: bool = typer.Option(False, "--open", help="Open the UI in a browser."),
        log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error."),
        ctx: int | None = typer.Option(
            None, "--ctx", min=16,
            help="Context window in tokens (default: the model's, at most 4096; "
                 "LOCALLOOM_N_CTX)."),
        parallel: int | None = typer.Option(
            None, "--parallel", min=1, max=256,
            help="Requests decoded together per model (default 8; LOCALLOOM_N_PARALLEL)."),
        threads: int | None = typer.Option(
            None, "--threads", min=1,
            help="Most CPU threads for compute (default: the physical cores; "
                 "LOCALLOOM_N_THREADS)."),
        upstream: list[str] = typer.Option(
            [], "--upstream", metavar="NAME=URL",
            help="An OpenAI-compatible server whose models this one serves too (repeatable; "
                 "more settings in upstreams.toml's [[upstream]] tables)."),
    ) -> None:
        """Serve the OpenAI-compatible API and the web UI on this machine.

        Prints a URL containing the access token: open it to use the web UI (the page keeps
        the token for that tab). API clients send `Authorization: Bearer <token>`; the token
        is in the `server-token` file of the config dir.
        """
        from localloom.server.runner import serve as run

        settings = Settings()
        given = (("host", host), ("port", port), ("n_ctx", ctx), ("n_parallel", parallel),
                 ("n_threads", threads))
        updates: dict[str, object] = {k: v for k, v in given if v is not None}
        if upstream:
            updates["upstream"] = [*settings.upstream, *upstream]
        settings = settings.model_copy(update=updates)
        out = Console(highlight=False, soft_wrap=True)

        def ready(url: str) -> None:
            out.print(f"LocalLoom is serving at {url.split('/#')[0]}/")
            out.print(f"Open this URL to use the web UI (it contains your token): {url}")
            sys.stdout.flush()
            if open_browser:
                import webbrowser

                webbrowser.open(url)

        try:
            run(settings, allow_remote=allow_remote, on_ready=ready, log_level=log_level)
        except LocalLoomError as exc:
            raise fail(exc) from exc
