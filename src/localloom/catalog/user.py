"""User models: ``[[model]]`` tables in models.toml files, with the built-in schema.

A bad entry, or a whole file that is not valid TOML, becomes a :class:`CatalogEntryError`
naming the file, the entry and the field; it never hides the valid entries around it.

Example ``models.toml``::

    [[model]]
    id = "my-model"
    display_name = "My fine-tune"
    download_size = 700_000_000
    ram_min_gb = 1.5
    ram_max_gb = 2
    context_length = 4096
    [model.source]
    kind = "local"
    path = "weights/my-model.Q4_K_M.gguf"   # relative to this file's folder
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from localloom._toml import FileProblem, field_problems, read_toml
from localloom.catalog.entry import ModelEntry
from localloom.errors import CatalogEntryError

__all__ = [
    "USER_TAG",
    "WHOLE_FILE",
    "UserModels",
    "entry_to_table",
    "load_user_models",
    "parse_entry",
    "parse_models_file",
]

WHOLE_FILE = "(whole file)"
USER_TAG = "user"


@dataclass
class UserModels:
    """Valid entries and the problems found, in file order."""

    entries: list[ModelEntry] = field(default_factory=list)
    problems: list[CatalogEntryError] = field(default_factory=list)


def _entry_name(raw: object, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return str(raw["id"])
    return f"#{index}"


def _resolve_local_path(raw: dict[str, Any], base: Path) -> None:
    source = raw.get("source")
    if not isinstance(source, dict) or source.get("kind") != "local":
        return
    path = source.get("path")
    if isinstance(path, str) and path:
        p = Path(path).expanduser()
        source["path"] = str(p if p.is_absolute() else (base / p).resolve())


def parse_entry(raw: object, index: int, path: Path) -> ModelEntry | list[CatalogEntryError]:
    """Validate one ``[[model]]`` table from `path`; returns the entry or its problems."""
    file = str(path)
    name = _entry_name(raw, index)
    if not isinstance(raw, dict):
        return [CatalogEntryError(file, name, "(entry)", "must be a [[model]] table")]
    data = dict(raw)
    if isinstance(data.get("source"), dict):
        data["source"] = dict(data["source"])
    _resolve_local_path(data, path.parent)
    tags = data.get("tags", [])
    if isinstance(tags, list) and USER_TAG not in tags:
        data["tags"] = [*tags, USER_TAG]
    data["origin"] = file  # where it came from is ours to say, not the file's
    try:
        return ModelEntry.model_validate(data)
    except ValidationError as exc:
        return [CatalogEntryError(file, name, loc, msg) for loc, msg in field_problems(exc)]


def parse_models_file(path: Path) -> UserModels:
    """Parse one models.toml: every valid entry, and one problem per bad field."""
    file = str(path)
    out = UserModels()
    doc = read_toml(path)
    if isinstance(doc, FileProblem):
        hint = ". Fix it; the other files and the built-in models still load."
        detail = doc.detail + (hint if doc.field == "(syntax)" else "")
        out.problems.append(CatalogEntryError(file, WHOLE_FILE, doc.field, detail))
        return out
    for key in doc:
        if key != "model":
            out.problems.append(CatalogEntryError(
                file, WHOLE_FILE, key, "unknown top-level key; models go in [[model]] tables"))
    tables = doc.get("model", [])
    if not isinstance(tables, list):
        out.problems.append(CatalogEntryError(
            file, WHOLE_FILE, "model", "write models as [[model]] tables (an array)"))
        return out
    for index, raw in enumerate(tables, start=1):
        result = parse_entry(raw, index, path)
        if isinstance(result, ModelEntry):
            out.entries.append(result)
        else:
            out.problems.extend(result)
    return out


def load_user_models(files: Sequence[Path], *, missing_ok: Collection[Path] = ()) -> UserModels:
    """Load every models.toml in order; a missing file is a problem unless in `missing_ok`."""
    out = UserModels()
    for path in files:
        if not path.exists():
            if path not in missing_ok:
                out.problems.append(CatalogEntryError(
                    str(path), WHOLE_FILE, "(file)",
                    "file not found; fix the path in LOCALLOOM_MODELS"))
            continue
        one = parse_models_file(path)
        out.entries.extend(one.entries)
        out.problems.extend(one.problems)
    return out


def entry_to_table(entry: ModelEntry) -> dict[str, Any]:
    """The ``[[model]]`` table for `entry`: only non-default fields, no origin or user tag."""
    table = entry.model_dump(mode="json", exclude_defaults=True, exclude={"origin"})
    tags = [t for t in table.get("tags", []) if t != USER_TAG]
    if tags:
        table["tags"] = tags
    else:
        table.pop("tags", None)
    return table
