"""Export saved results as JSON, Markdown or CSV, and read JSON exports back.

JSON is the lossless format: :func:`parse_json` rebuilds every field, ids and timestamps
included. Markdown is for reading; CSV is for spreadsheets (nested values as JSON text).

Example::

    text = to_json(records)
    assert parse_json(text) == records
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from localloom.errors import InvalidRequestError
from localloom.history.record import SavedResult

__all__ = [
    "FORMAT_NAME",
    "ExportFormat",
    "export_records",
    "normalize_format",
    "parse_json",
    "to_csv",
    "to_json",
    "to_markdown",
]

ExportFormat = Literal["json", "markdown", "csv"]

FORMAT_NAME = "localloom-history"
_FORMAT_VERSION = 1
_ALIASES: dict[str, ExportFormat] = {"json": "json", "markdown": "markdown", "md": "markdown",
                                     "csv": "csv"}
CSV_COLUMNS = ("id", "task", "model", "language", "source", "source_url", "source_title",
               "created_at", "updated_at",
               "prompt_tokens", "completion_tokens", "parameters", "timings", "original",
               "result")


def normalize_format(name: str) -> ExportFormat:
    """'json' | 'markdown' (or 'md') | 'csv', case-insensitive; else InvalidRequestError."""
    found = _ALIASES.get(name.strip().lower())
    if found is None:
        raise InvalidRequestError(
            f"Unknown export format '{name}'. Use one of: json, markdown (md), csv.",
            param="format",
        )
    return found


def export_records(records: Sequence[SavedResult], fmt: str) -> str:
    """Render records in the named format."""
    kind = normalize_format(fmt)
    if kind == "json":
        return to_json(records)
    if kind == "markdown":
        return to_markdown(records)
    return to_csv(records)


def to_json(records: Sequence[SavedResult]) -> str:
    """A self-describing JSON document holding every field of every record."""
    doc = {"format": FORMAT_NAME, "version": _FORMAT_VERSION,
           "results": [r.to_dict() for r in records]}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def parse_json(text: str) -> list[SavedResult]:
    """Records from a JSON export (or a bare list of record objects)."""
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"The import file is not valid JSON (line {exc.lineno}, column {exc.colno}): "
            f"{exc.msg}. Import files written by `localloom history export --format json`."
        ) from exc
    if isinstance(doc, dict):
        if doc.get("format") != FORMAT_NAME or not isinstance(doc.get("results"), list):
            raise InvalidRequestError(
                "The JSON file is not a LocalLoom history export (expected "
                f"\"format\": \"{FORMAT_NAME}\" and a \"results\" list)."
            )
        items = doc["results"]
    elif isinstance(doc, list):
        items = doc
    else:
        raise InvalidRequestError("The JSON file must hold an export object or a list of results.")
    out: list[SavedResult] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"Result #{index + 1} in the import file is not an object.")
        out.append(SavedResult.from_dict(item))
    return out


def to_markdown(records: Sequence[SavedResult]) -> str:
    """A readable document: one section per result, newest first as given."""
    parts = ["# LocalLoom saved results\n"]
    for r in records:
        meta = [
            f"- **Id:** `{r.id}`",
            f"- **Model:** {r.model}",
            f"- **Created:** {r.created_at.isoformat()}",
        ]
        if r.language:
            meta.append(f"- **Language:** {r.language}")
        if r.source:
            meta.append(f"- **Source:** {r.source}")
        if r.source_url and r.source_url != r.source:
            title = r.source_title or r.source_url
            meta.append(f"- **Page:** [{_md_text(title)}](<{r.source_url}>)")
        meta.append(f"- **Tokens:** {r.prompt_tokens} prompt, {r.completion_tokens} completion")
        quoted = "\n".join("> " + line if line else ">" for line in r.original.splitlines())
        parts.append(
            f"## {r.task.capitalize()}\n\n" + "\n".join(meta)
            + f"\n\n### Result\n\n{r.result.strip()}\n\n### Original\n\n{quoted}\n"
        )
    return "\n".join(parts)


def to_csv(records: Sequence[SavedResult]) -> str:
    """One row per result with a header row; parameters and timings as JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        data = r.to_dict()
        data["parameters"] = json.dumps(r.parameters, ensure_ascii=False, sort_keys=True)
        data["timings"] = json.dumps(r.timings, sort_keys=True)
        writer.writerow([_cell(data[c]) for c in CSV_COLUMNS])
    return buffer.getvalue()


def _md_text(text: str) -> str:
    """A page title as literal link text (brackets and markup characters escaped)."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|])", r"\\\1", " ".join(text.split()))


def _cell(value: object) -> object:
    """Neutralise spreadsheet formulas: saved text comes from web pages and models, and a
    cell starting with = + - @ would run as a formula when the CSV is opened (OWASP's
    "CSV injection"); a leading apostrophe makes spreadsheets show it as text."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
