"""`localloom history list|search|show|rm|export|import|reindex`: the saved results."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from localloom.cli._errors import cli_errors, print_error
from localloom.config import Settings
from localloom.history import HistoryStore, SavedResult

__all__ = ["register"]

_ID_WIDTH = 12


def _store() -> HistoryStore:
    return HistoryStore.for_settings(Settings())


def _preview(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _table(records: list[SavedResult], title: str) -> None:
    out = Console()
    if not records:
        out.print(f"{title}: nothing found.")
        return
    if out.width < 120:
        _entries(records, title, out)
        return
    table = Table(title=title)
    # Ids and dates never wrap: a user copies them whole into `history show`.
    table.add_column("id", no_wrap=True, min_width=_ID_WIDTH)
    table.add_column("saved", no_wrap=True)
    for column in ("task", "model", "source", "result"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(r.id[:_ID_WIDTH], r.created_at.strftime("%Y-%m-%d %H:%M"), r.task,
                      escape(r.model), escape(r.source or ""), escape(_preview(r.result)))
    out.print(table)


def _tail(text: str, width: int) -> str:
    """The end of a path or URL (its file name says most), cut to ``width``."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _entries(records: list[SavedResult], title: str, out: Console) -> None:
    """Narrow terminals: one block per result, like `git log`; the id leads its line."""
    width = max(40, out.width)
    out.print(f"[bold]{escape(title)}[/]")
    for r in records:
        out.print()
        out.print(f"[bold]{r.id[:_ID_WIDTH]}[/]  {r.created_at.strftime('%Y-%m-%d %H:%M')}  "
                  f"{escape(r.task)}  [dim]{escape(r.model)}[/]", soft_wrap=True)
        out.print("  " + escape(_preview(r.result, width - 3)), soft_wrap=True)
        if r.source:
            out.print(f"  [dim]from {escape(_tail(r.source, width - 8))}[/]", soft_wrap=True)
    out.print()
    out.print("[dim]`localloom history show ID` prints one in full.[/]")


def history_list(
    limit: int = typer.Option(20, "--limit", "-n", help="How many to show."),
    offset: int = typer.Option(0, "--offset", help="Skip this many of the newest."),
    task: str | None = typer.Option(None, "--task", help="Only this task."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List saved results, newest first."""
    with cli_errors(), _store() as store:
        records = store.list(limit, offset, task=task, model=model)
        total = store.count(task=task, model=model)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], ensure_ascii=False, indent=2))
        return
    _table(records, f"Saved results ({len(records)} of {total})")


def history_search(
    query: str = typer.Argument(..., help='Words to find; "a phrase"; a prefix like volc*.'),
    limit: int = typer.Option(20, "--limit", "-n", help="How many to show."),
    task: str | None = typer.Option(None, "--task", help="Only this task."),
    mode: str | None = typer.Option(
        None, "--mode", help="semantic (by meaning), fts (by words) or hybrid (both, fused). "
        "Default: hybrid once results are embedded (`localloom history reindex`), else fts."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Search saved results (original text, result and task), best matches first."""
    from localloom.history.semantic import EngineEmbedder, check_mode, open_index

    settings = Settings()
    with cli_errors(), _store() as store:
        embedder = EngineEmbedder(settings)
        try:
            index = open_index(store, embedder)
            chosen = check_mode(mode) if mode else ("hybrid" if index.count() else "fts")
            records = [hit.record for hit in index.search(query, limit, mode=chosen,
                                                          task=task)]
            unindexed = len(index.missing()) if chosen != "fts" else 0
        finally:
            embedder.close()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], ensure_ascii=False, indent=2))
        return
    _table(records, f"Results for {query!r} ({chosen})")
    if unindexed:
        Console(stderr=True).print(f"{unindexed} saved result(s) have no embedding yet and "
                                   "cannot be found by meaning until you run `localloom "
                                   "history reindex`.", soft_wrap=True)


def history_reindex(
    everything: bool = typer.Option(False, "--all", help="Recompute every embedding, not "
                                    "only the missing ones."),
) -> None:
    """Embed saved results for search by meaning (LOCALLOOM_EMBEDDING_MODEL)."""
    from localloom.history.semantic import EngineEmbedder, open_index

    settings = Settings()
    err = Console(stderr=True)
    with cli_errors(), _store() as store:
        embedder = EngineEmbedder(settings)
        try:
            index = open_index(store, embedder)
            done = index.reindex(everything=everything,
                                 progress=lambda n, total: err.print(
                                     f"\rEmbedded {n}/{total}", end=""))
            total = index.count()
        finally:
            embedder.close()
    if done:
        err.print()
    Console().print(f"Embedded {done} result(s) with {embedder.model}; {total} of "
                    f"{store_count(settings)} saved results can be searched by meaning.")


def store_count(settings: Settings) -> int:
    """How many results are saved (a fresh read, after the store above closed)."""
    with HistoryStore.for_settings(settings) as store:
        return store.count()


def history_show(
    result_id: str = typer.Argument(..., metavar="ID", help="An id, or its first characters."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show one saved result in full."""
    with cli_errors(), _store() as store:
        record = store.get(result_id)
    if record is None:
        print_error(f"No saved result has the id '{result_id}'. `localloom history list` "
                    "shows them.")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(record.to_dict(), ensure_ascii=False, indent=2))
        return
    out = Console()
    out.print(f"[bold]{record.task}[/] · {escape(record.model)} · "
              f"{record.created_at.isoformat(timespec='seconds')} · id {record.id}")
    if record.source:
        out.print(f"source: {escape(record.source)}")
    out.print(f"language: {record.language or '?'} · tokens: {record.prompt_tokens} prompt, "
              f"{record.completion_tokens} completion")
    out.rule("result")
    out.print(escape(record.result))
    out.rule("original")
    out.print(escape(record.original))


def history_rm(
    ids: list[str] = typer.Argument(..., metavar="ID", help="Ids (or their first characters)."),
) -> None:
    """Delete saved results."""
    missing = []
    with cli_errors(), _store() as store:
        for key in ids:
            if store.delete(key):
                Console().print(f"Deleted {escape(key)}.")
            else:
                missing.append(key)
    if missing:
        print_error("No saved result has the id " + ", ".join(f"'{m}'" for m in missing)
                    + ". `localloom history list` shows them.")
        raise typer.Exit(1)


def history_export(
    ids: list[str] | None = typer.Argument(None, metavar="ID",
                                           help="Only these (default: all)."),
    fmt: str = typer.Option("json", "--format", help="json (lossless, importable), md or csv."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
    force: bool = typer.Option(False, "--force", help="Replace --output if it exists."),
) -> None:
    """Export saved results as JSON, Markdown or CSV."""
    with cli_errors(), _store() as store:
        text = store.export(fmt, ids or None)
    if output is None:
        typer.echo(text, nl=False)
        return
    if output.exists() and not force:
        print_error(f"{output} exists. Choose another --output or add --force to replace it.")
        raise typer.Exit(1)
    output.write_text(text, encoding="utf-8", newline="")
    Console(stderr=True).print(f"Wrote {escape(str(output))}.")


def history_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A JSON export."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite results with the same id."),
) -> None:
    """Import results from a JSON export (ids and timestamps are kept)."""
    with cli_errors(), _store() as store:
        added = store.import_json(file.read_text(encoding="utf-8"), replace=replace)
        total = store.count()
    Console().print(f"Imported {added} result(s); {total} saved in all.")


def register(app: typer.Typer) -> None:
    """Add the `history` command group to the root app."""
    group = typer.Typer(help="Saved results: list, search, show, rm, export, import, reindex.",
                        no_args_is_help=True)
    group.command("list")(history_list)
    group.command("search")(history_search)
    group.command("show")(history_show)
    group.command("rm")(history_rm)
    group.command("export")(history_export)
    group.command("import")(history_import)
    group.command("reindex")(history_reindex)
    app.add_typer(group, name="history")
