"""`localloom models` (list, add, rm-user) and `localloom recommend`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from localloom.catalog import (
    MIN_TOKENS_PER_S,
    Capability,
    Catalog,
    Fit,
    Hardware,
    ModelEntry,
    detect_hardware,
    entry_from_gguf,
    fit,
    format_gb_range,
    id_from_filename,
    recommend,
)
from localloom.catalog.bandwidth import Bandwidth, memory_bandwidth
from localloom.catalog.hubpull import add_hub_file
from localloom.cli._errors import fail as _fail
from localloom.cli.store import progress_bar
from localloom.config import Settings
from localloom.errors import CatalogEntryError, ConfigError, LocalLoomError
from localloom.store import ModelStore

__all__ = ["register"]

_FIT_STYLE = {"fits": "green", "tight": "yellow", "does_not_fit": "red"}
_MIN_WIDTH = {"size": 7, "RAM": 8, "fit": 8}  # "~600 MB", "1–1.5 GB", "does not"



def _warn_problems(problems: list[CatalogEntryError]) -> None:
    err = Console(stderr=True)
    for p in problems:
        err.print(f"[yellow]warning:[/] {escape(p.file)}: model '{escape(p.entry)}', "
                  f"field '{escape(p.field)}': {escape(p.problem)}")


def _size_text(entry: ModelEntry) -> str:
    if entry.size_label:
        return entry.size_label
    size = entry.download_size
    if size >= 1e9:
        return f"{size / 1e9:.1f} GB"
    return f"{size / 1e6:.0f} MB" if size >= 1e7 else f"{size / 1e6:.1f} MB"


def _cached(settings: Settings, entries: list[ModelEntry]) -> dict[str, bool]:
    """Which entries have a verified file (local ones: whose file exists)."""
    store = ModelStore(settings)
    return {e.id: bool(store.is_cached(e)) for e in entries}


def _hardware_line(hw: Hardware) -> str:
    gpu = "none"
    if hw.unified_memory:
        gpu = "unified memory (Metal)" if hw.gpu_offload else "unified memory, no GPU backend"
    elif hw.gpus:
        names = ", ".join(f"{g.name} {g.total_gb:.1f} GB" for g in hw.gpus)
        gpu = names if hw.gpu_offload else f"{names} (llama.cpp built without a GPU backend)"
    cores = f"{hw.physical_cores} CPU cores, " if hw.physical_cores else ""
    return (f"This machine: {hw.total_ram_gb:.1f} GB RAM ({hw.available_ram_gb:.1f} GB free), "
            f"{cores}GPU: {gpu}.")


@dataclasses.dataclass
class _Remote:
    """What the configured upstreams serve, asked when the command runs."""

    models: list[dict[str, Any]]  # id, remote (upstream names, comma-separated), n_ctx
    unreachable: list[str]  # "NAME (URL)" of upstreams that did not list their models


def _remote(settings: Settings) -> _Remote:
    if not settings.upstreams_configured:
        return _Remote([], [])
    from localloom.upstream import Upstreams

    upstreams = Upstreams.from_settings(settings)
    if upstreams is None:  # an upstreams.toml without tables
        return _Remote([], [])
    try:
        models = [{"id": model, "remote": ",".join(names),
                   "n_ctx": upstreams.info(pool).n_ctx}
                  for model, names in upstreams.models().items()
                  if (pool := upstreams.pool(model)) is not None]
        return _Remote(models, [f"{s.name} ({s.config.url})" for s in upstreams.unlisted()])
    finally:
        upstreams.close()


def _remote_table(remote: _Remote) -> Table:
    table = Table(title="Remote models (served by upstreams)", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("upstreams")
    table.add_column("context")
    for m in remote.models:
        table.add_row(escape(m["id"]), escape(m["remote"]), str(m["n_ctx"]))
    return table


def _json_out(entries: list[ModelEntry], fits: dict[str, Fit], cached: dict[str, bool],
              hw: Hardware, problems: list[CatalogEntryError], remote: _Remote) -> str:
    models = []
    for e in entries:
        row: dict[str, Any] = e.model_dump(mode="json")
        row["fit"] = dataclasses.asdict(fits[e.id])
        row["cached"] = cached[e.id]
        models.append(row)
    hardware = dataclasses.asdict(hw) | {"vram_total_gb": hw.vram_total_gb}
    issues = [{"file": p.file, "entry": p.entry, "field": p.field, "problem": p.problem}
              for p in problems]
    return json.dumps({"hardware": hardware, "models": models, "problems": issues,
                       "remote_models": remote.models,
                       "unreachable_upstreams": remote.unreachable}, indent=2)


# One letter per flag worth telling apart; chat and completion are what most models do.
_CAP_LETTERS: tuple[tuple[Capability, str], ...] = (
    ("tools", "T"), ("reasoning", "R"), ("embedding", "E"))
CAPS_LEGEND = "caps: T calls tools, R reasons (thinks) first, E embeddings."


def _caps_text(entry: ModelEntry) -> str:
    return "".join(letter for cap, letter in _CAP_LETTERS if entry.has(cap)) or "-"


def _table(entries: list[ModelEntry], fits: dict[str, Fit], cached: dict[str, bool],
           *, width: int) -> Table:
    wide = width >= 120
    table = Table(title="LocalLoom models", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                  padding=(0, 1) if wide else 0)
    # Ids never wrap: users copy them whole into `localloom pull ID`; other columns fold.
    table.add_column("id", no_wrap=True)
    if wide:
        table.add_column("name")
    # At 80 columns the speed column goes, and "cached" becomes a line under the table.
    names = ("size", "RAM", "speed", "quality", "caps", "fit", "cached") if width >= 100 else \
        ("size", "RAM", "quality", "caps", "fit")
    for name in names:
        # Words wrap whole ("does not / fit"); a column never breaks inside a word.
        table.add_column(name, no_wrap=name in ("quality", "caps", "cached"), overflow="fold",
                         min_width=_MIN_WIDTH.get(name))
    for e in entries:
        f = fits[e.id]
        values = {"size": escape(_size_text(e)), "RAM": format_gb_range(e.ram_min_gb,
                                                                         e.ram_max_gb),
                  "speed": e.speed, "quality": e.quality, "caps": _caps_text(e),
                  "fit": f"[{_FIT_STYLE[f.status]}]{f.label}[/]",
                  "cached": "yes" if cached[e.id] else "-"}
        row = [escape(e.id)] + ([escape(e.display_name)] if wide else [])
        table.add_row(*row, *(values[n] for n in names))
    return table


def _downloaded_line(entries: list[ModelEntry], cached: dict[str, bool]) -> str:
    have = [e.id for e in entries if cached[e.id]]
    return f"Downloaded: {', '.join(have)}." if have else \
        "Downloaded: none yet (`localloom pull ID` fetches one)."


def list_models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the models LocalLoom knows, with what they need and whether they fit here, and
    the models the configured upstreams serve (marked remote)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings()
    catalog = Catalog(settings)
    entries, hw = catalog.entries(), detect_hardware()
    fits = {e.id: fit(e, hw) for e in entries}
    cached = _cached(settings, entries)
    try:
        remote = _remote(settings)
    except LocalLoomError as exc:  # a bad upstreams.toml
        raise _fail(exc) from exc
    if as_json:
        typer.echo(_json_out(entries, fits, cached, hw, catalog.problems, remote))
        return
    console = Console()
    console.print(_table(entries, fits, cached, width=console.width))
    console.print(CAPS_LEGEND)
    if console.width < 100:  # the narrow table has no "cached" column
        console.print(escape(_downloaded_line(entries, cached)))
    console.print(escape(_hardware_line(hw)))
    if remote.models:
        console.print(_remote_table(remote))
    _warn_problems(catalog.problems)
    for where in remote.unreachable:
        Console(stderr=True).print(
            f"[yellow]warning:[/] upstream {escape(where)} did not list its models (is it "
            "running?); they are left out.")


def add(
    path: Path | None = typer.Argument(None, help="A GGUF file on this machine."),
    repo: str | None = typer.Option(None, "--repo", help="Hugging Face repo."),
    file: str | None = typer.Option(None, "--file", help="GGUF file in the repo."),
    revision: str = typer.Option("main", "--revision", help="Branch, tag or commit."),
    model_id: str | None = typer.Option(None, "--id", help="Catalog id to use."),
    name: str | None = typer.Option(None, "--name", help="Display name."),
) -> None:
    """Add a GGUF model (a local PATH, or --repo and --file) to your models.toml."""
    if (path is None) == (repo is None and file is None) or (repo is None) != (file is None):
        raise typer.BadParameter("give either PATH, or both --repo and --file")
    settings = Settings()
    catalog = Catalog(settings)
    try:
        new_id = model_id or id_from_filename(path if path is not None else str(file))
        if new_id in catalog:  # before any download
            raise ConfigError(f"The catalog already has a model named '{new_id}'. Choose "
                              "another id with --id.")
        # A trial load in a child process: a file llama.cpp cannot load (or that crashes it)
        # is refused before it reaches models.toml.
        trial = trial_load(settings)
        if path is not None:
            entry = entry_from_gguf(path, model_id=new_id, display_name=name, trial_load=trial)
            catalog.add_user_model(entry)
        else:
            assert repo is not None and file is not None
            with progress_bar() as progress:
                entry = add_hub_file(settings, repo, file, revision=revision, model_id=new_id,
                                     display_name=name, progress=progress, trial_load=trial)
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    console = Console(soft_wrap=True)
    console.print(f"Added [bold]{escape(entry.id)}[/] to {escape(str(catalog.user_file))}.")
    console.print(escape(entry.description))


def trial_load(settings: Settings) -> Callable[[Path], None]:
    """Load a GGUF in a throwaway child process; raises if llama.cpp cannot (or crashes)."""

    def load(path: Path) -> None:
        from localloom.engine.probe import probe_model

        probe_model(path, settings=settings)

    return load


def rm_user(model_id: str = typer.Argument(..., help="Id of a model you added.")) -> None:
    """Remove a model you added from models.toml (its file stays where it is)."""
    catalog = Catalog(Settings())
    try:
        written = catalog.remove_user_model(model_id)
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    Console().print(f"Removed {escape(model_id)} from {escape(str(written))}.")


def recommend_cmd(
    ram_gb: float | None = typer.Option(
        None, "--ram-gb", help="Pretend the machine has this much RAM (GB), all free."),
    bandwidth_gbs: float | None = typer.Option(
        None, "--bandwidth-gbs",
        help="Pretend memory reads run at this many GB/s (default: measured once, cached)."),
    min_speed: float = typer.Option(
        MIN_TOKENS_PER_S, "--min-speed", min=0,
        help="Tokens/s a model must reach to be recommended (0: judge RAM only)."),
    measure: bool = typer.Option(False, "--measure",
                                 help="Measure the memory bandwidth again (not the cached "
                                      "figure)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Name the best model that fits this machine and runs fast enough on it, and why.

    Speed is estimated from the memory read bandwidth (a one-second probe, cached for 30
    days) and the model's size: a CPU reads every weight once per token.
    """
    settings = Settings()
    hw = detect_hardware()
    if ram_gb is not None:
        hw = dataclasses.replace(hw, total_ram_gb=ram_gb, available_ram_gb=ram_gb)
    band = (Bandwidth(bandwidth_gbs, "given") if bandwidth_gbs is not None
            else memory_bandwidth(settings, refresh=measure))
    hw = dataclasses.replace(hw, memory_bandwidth_gbs=band.gb_per_s)
    rec = recommend(Catalog(settings), hw, min_tokens_per_s=min_speed)
    if as_json:
        typer.echo(json.dumps({"id": rec.entry.id, "fit": dataclasses.asdict(rec.fit),
                               "reason": rec.reason, "tokens_per_s": rec.tokens_per_s,
                               "memory_bandwidth_gbs": band.gb_per_s,
                               "bandwidth_source": band.source,
                               "min_tokens_per_s": min_speed}, indent=2))
        return
    console = Console()
    console.print(f"Recommended: [bold]{escape(rec.entry.id)}[/]")
    console.print(escape(rec.reason))
    console.print(escape(_hardware_line(hw)) + " " + escape(band.text) + ".")
    if rec.tokens_per_s is not None:
        console.print("[dim]Speeds are estimates: the CPU reads every weight once per token; "
                      "other busy programs slow it down.[/]")


def register(app: typer.Typer) -> None:
    """Add `models` (with `add`, `rm-user`) and `recommend` to the root app."""
    models_app = typer.Typer(help="List and add models.", no_args_is_help=False)
    models_app.callback(invoke_without_command=True)(list_models)
    models_app.command("add")(add)
    models_app.command("rm-user")(rm_user)
    app.add_typer(models_app, name="models")
    app.command("recommend")(recommend_cmd)
