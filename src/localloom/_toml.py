"""Reading the user's TOML files (models.toml, tasks.toml) and wording their problems.

Both files report every problem at once (one per bad field) instead of stopping at the
first, so the wording of a pydantic error as ``(field, message)`` lives here once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["FileProblem", "TOMLDecodeError", "field_problems", "loads_toml", "read_toml"]

TOMLDecodeError = tomllib.TOMLDecodeError


@dataclass(frozen=True)
class FileProblem:
    """Why a whole TOML file cannot be used: ``field`` is ``(syntax)`` or ``(file)``,
    ``error`` the parser's or the system's own words."""

    field: str
    error: str

    @property
    def detail(self) -> str:
        """``not valid TOML: ...`` or ``unreadable: ...``."""
        what = "not valid TOML" if self.field == "(syntax)" else "unreadable"
        return f"{what}: {self.error}"


def loads_toml(text: str) -> dict[str, Any]:
    """Parse TOML text (tomllib, or tomli on Python 3.10)."""
    doc: dict[str, Any] = tomllib.loads(text)
    return doc


def read_toml(path: Path) -> dict[str, Any] | FileProblem:
    """The parsed document in ``path``, or why it cannot be read (never raises)."""
    try:
        return loads_toml(path.read_text(encoding="utf-8"))
    except TOMLDecodeError as exc:
        return FileProblem("(syntax)", str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        return FileProblem("(file)", str(exc))


def field_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """One ``(field, message)`` per error in ``exc``: dotted field path, plain message."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(entry)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling against the schema in the docs)"
        out.append((loc, msg))
    return out
