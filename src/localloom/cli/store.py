"""`localloom pull | ls | rm | verify | where`: the model store from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from localloom.cli._errors import fail as _fail
from localloom.config import Settings
from localloom.errors import LocalLoomError, ModelNotFoundError
from localloom.store import ModelStore, ProgressCallback, VerifyResult, lookup
from localloom.store._hubref import is_hub_reference

__all__ = ["progress_bar", "register"]



def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


@contextmanager
def progress_bar(console: Console | None = None) -> Iterator[ProgressCallback]:
    """A Rich progress bar fed by the store's ``(fraction, done, total, text)`` callback."""
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                  console=console or Console(stderr=True)) as bar:
        task = bar.add_task("Starting", total=None)

        def update(fraction: float, done: int, total: int, text: str) -> None:
            bar.update(task, completed=done, total=total or None, description=escape(text))

        yield update


def pull(
    model_id: str = typer.Argument(
        ..., metavar="MODEL",
        help="Model id or alias (`localloom models`), or a Hub repo: hf.co/ORG/REPO[:QUANT]."),
    force: bool = typer.Option(False, "--force", help="Download again even if cached."),
    new_id: str | None = typer.Option(
        None, "--id", help="Id for a model pulled by hf.co reference (default: file name)."),
) -> None:
    """Download a model and verify its sha256 (resumes an interrupted download).

    With hf.co/ORG/REPO, the repo's GGUF files are listed, the QUANT asked for (or a
    4-bit one: Q4_K_M first) is downloaded and verified, and the model is added to your
    models.toml, with the reference as an alias.
    """
    settings = Settings()
    out = Console(soft_wrap=True)
    try:
        if is_hub_reference(model_id):
            from localloom.catalog.hubpull import pull_hub_reference
            from localloom.cli.models import trial_load

            with progress_bar() as progress:
                entry, path, added = pull_hub_reference(
                    model_id, settings, model_id=new_id, progress=progress,
                    trial_load=trial_load(settings))
            if added:
                file, repo = entry.source.file or "", entry.source.repo or ""
                out.print(f"Added [bold]{escape(entry.id)}[/] to your models ({escape(file)} "
                          f"from {escape(repo)}); aliases: {escape(', '.join(entry.aliases))}.")
        else:
            entry = lookup(model_id, settings)
            with progress_bar() as progress:
                path = ModelStore(settings).pull(entry, progress=progress, force=force)
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    out.print(f"[green]ready[/] {escape(entry.id)}: {escape(str(path))}")


def ls() -> None:
    """List downloaded models with their size and whether they are verified."""
    store = ModelStore(Settings())
    cached = store.list_cached()
    console = Console()
    if not cached:
        console.print("No models downloaded yet. `localloom models` lists them; "
                      "`localloom pull ID` downloads one.")
        return
    table = Table(title=f"Models in {escape(str(store.cache_dir))}", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)  # ids stay whole: users copy them into commands
    table.add_column("size", no_wrap=True)
    table.add_column("verified")
    table.add_column("path", overflow="fold")
    for model in cached:
        mark = "[green]yes[/]" if model.verified else "[red]no[/] (`localloom verify`)"
        table.add_row(escape(model.id), _size(model.size), mark, escape(str(model.path)))
    console.print(table)
    console.print(f"Cache total: {_size(store.cache_size())}")


def rm(model_id: str = typer.Argument(..., metavar="MODEL", help="Model id or alias.")) -> None:
    """Delete a downloaded model (files you added by path are never deleted)."""
    settings = Settings()
    store = ModelStore(settings)
    try:
        entry = lookup(model_id, settings)
        removed = store.delete(entry)
    except ModelNotFoundError as exc:
        # A cache folder whose entry is gone (`verify` names it) can still be removed by name.
        if store.delete_leftover(model_id):
            Console().print(f"Removed the files of {escape(model_id)} from the cache.")
            return
        raise _fail(exc) from exc
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    if entry.source.kind == "local":
        message = f"{entry.id} is your file {entry.source.path}; LocalLoom never deletes it."
    elif removed:
        message = f"Removed {entry.id}."
    else:
        message = f"{entry.id} was not downloaded; nothing to remove."
    Console().print(escape(message))


def verify(
    model_id: str | None = typer.Argument(None, metavar="MODEL",
                                          help="Model id; all downloads if omitted."),
) -> None:
    """Rehash downloaded models and compare with their sha256; exit 1 if any is damaged."""
    settings = Settings()
    store = ModelStore(settings)
    try:
        results = ([store.verify(lookup(model_id, settings))] if model_id is not None
                   else store.verify_all())
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    _print_results(results)
    if any(not r.ok for r in results):
        raise typer.Exit(1)


def _print_results(results: list[VerifyResult]) -> None:
    console = Console()
    if not results:
        console.print("No models downloaded yet; nothing to verify.")
    for result in results:
        mark = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
        console.print(f"{mark} {escape(result.message)}", soft_wrap=True)


def where(
    model_id: str | None = typer.Argument(None, metavar="MODEL",
                                          help="Model id; the cache folder if omitted."),
) -> None:
    """Print the cache folder, or the path of one model's file."""
    settings = Settings()
    if model_id is None:
        typer.echo(str(settings.cache_dir))
        return
    try:
        entry = lookup(model_id, settings)
        store = ModelStore(settings)
        path = store.path_for(entry)
        cached = store.is_cached(entry)
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    typer.echo(str(path))
    if not cached:
        Console(stderr=True).print(
            f"[yellow]note:[/] {escape(entry.id)} is not downloaded yet; "
            f"`localloom pull {escape(entry.id)}` downloads it.", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add pull, ls, rm, verify and where to the root app."""
    app.command("pull")(pull)
    app.command("ls")(ls)
    app.command("rm")(rm)
    app.command("verify")(verify)
    app.command("where")(where)
