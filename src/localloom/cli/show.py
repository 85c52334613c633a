"""`localloom show MODEL`: what a model is, read offline from the catalog and its GGUF header.

Like Ollama's ``show``: architecture, parameters, quantization, context, capabilities, chat
template, license and the file's path. A model that is not downloaded shows its catalog
entry and the command that downloads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from localloom.catalog import Catalog, ModelEntry, format_gb_range
from localloom.cli._errors import fail as _fail
from localloom.config import Settings
from localloom.errors import LocalLoomError, ModelLoadError
from localloom.gguf_header import GGUFFormatError, GGUFInfo, read_gguf_header
from localloom.store import ModelStore

__all__ = ["register"]


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n:,}"


def _facts(entry: ModelEntry, info: GGUFInfo | None, path: Path | None,
           cached: bool) -> dict[str, Any]:
    source = entry.source
    where = {"hub": f"hf.co/{source.repo} ({source.file})", "pypi": f"PyPI {source.package}",
             "local": "your file"}[source.kind]
    facts: dict[str, Any] = {
        "id": entry.id, "name": entry.display_name, "aliases": list(entry.aliases),
        "source": where, "downloaded": cached, "path": str(path) if path else None,
        "context_length": entry.context_length,
        "ram": format_gb_range(entry.ram_min_gb, entry.ram_max_gb),
        "license": entry.license, "prompt_style": entry.prompt_style,
        "capabilities": list(entry.capabilities), "description": entry.description,
    }
    if info is not None:
        facts.update(architecture=info.architecture, parameters=_params(info.n_params),
                     quantization=info.file_type_name, file_size=info.file_size,
                     context_length=info.context_length or entry.context_length,
                     layers=info.block_count, embedding_length=info.embedding_length,
                     vocab_size=info.vocab_size)
        if entry.license == "unknown" and info.metadata.get("general.license"):
            facts["license"] = str(info.metadata["general.license"])
    facts["chat_template"] = entry.chat_template or (info.chat_template if info else None)
    return facts


def _print(facts: dict[str, Any], show_template: bool) -> None:
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"[bold]{escape(facts['id'])}[/]  {escape(facts['name'])}")
    labels = [("architecture", "architecture"), ("parameters", "parameters"),
              ("quantization", "quantization"), ("context_length", "context"),
              ("layers", "layers"), ("vocab_size", "vocabulary"), ("ram", "RAM needed"),
              ("capabilities", "capabilities"), ("license", "license"), ("source", "source"),
              ("aliases", "aliases"), ("path", "file")]
    for key, label in labels:
        value = facts.get(key)
        if value in (None, [], ""):
            continue
        text = ", ".join(value) if isinstance(value, list) else str(value)
        out.print(f"  {label:<13} {escape(text)}")
    if not facts["downloaded"]:
        out.print(f"  {'file':<13} not downloaded: `localloom pull {escape(facts['id'])}` "
                  "fetches it")
    template = facts.get("chat_template")
    if template and show_template:
        out.rule("chat template")
        out.print(escape(template))
    elif template:
        out.print(f"  {'chat template':<13} {len(template)} characters (--template prints it)")
    else:
        out.print(f"  {'chat template':<13} none: use completion-style prompts (--raw)")


def show(model_id: str = typer.Argument(..., metavar="MODEL", help="Model id or alias."),
         template: bool = typer.Option(False, "--template", help="Print the chat template."),
         as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show MODEL's metadata, capabilities, context, license, chat template and file.

    Works offline: it reads the catalog and the downloaded file's GGUF header.
    """
    settings = Settings()
    try:
        entry = Catalog(settings).get(model_id)
        store = ModelStore(settings)
        cached = store.is_cached(entry)
        path = store.path_for(entry) if cached else None
        info = None
        if path is not None:
            try:
                info = read_gguf_header(path)
            except (GGUFFormatError, OSError) as exc:
                raise ModelLoadError(f"{path} cannot be read as GGUF ({exc}). Run `localloom "
                                     f"verify {entry.id}`.") from exc
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    facts = _facts(entry, info, path, cached)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    _print(facts, template)


def register(app: typer.Typer) -> None:
    """Add `show` to the root app."""
    app.command("show")(show)
