"""`SavedResult`: one saved task result, as stored, exported and imported.

Example::

    from localloom.history import SavedResult
    record = SavedResult(task="summarize", model="starter", original=text, result=summary)
    record.to_dict()["id"]   # a uuid4 hex string, kept across export and import
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from localloom.errors import InvalidRequestError

__all__ = ["SavedResult", "new_id", "utc_now"]


def new_id() -> str:
    """A fresh record id (uuid4, 32 hex digits)."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SavedResult:
    """A task result worth keeping: what went in, what came out, and how it was made."""

    task: str
    model: str
    original: str
    result: str
    parameters: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    language: str | None = None
    source_url: str | None = None  # the web page a browser extension saved it from
    source_title: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds, by phase
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; timestamps as ISO 8601 strings."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["created_at"] = self.created_at.isoformat()
        out["updated_at"] = self.updated_at.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SavedResult:
        """Rebuild a record from :meth:`to_dict` output (export files included).

        Raises InvalidRequestError naming the first missing or malformed field.
        """
        known = {f.name for f in fields(cls)}
        missing = [n for n in ("task", "model", "original", "result") if n not in data]
        if missing:
            raise InvalidRequestError(
                f"A saved result is missing the field '{missing[0]}'. Export files written by "
                "`localloom history export --format json` have every field.",
                param=missing[0],
            )
        values = {k: v for k, v in data.items() if k in known}
        for name in ("created_at", "updated_at"):
            if name in values:
                values[name] = _parse_time(values[name], name)
        for name in ("task", "model", "original", "result"):
            if not isinstance(values[name], str):
                raise InvalidRequestError(f"Field '{name}' must be a string.", param=name)
        for name in ("prompt_tokens", "completion_tokens"):
            if name in values and (isinstance(values[name], bool)
                                   or not isinstance(values[name], int)
                                   or not 0 <= values[name] < 2**63):  # SQLite's INTEGER
                raise InvalidRequestError(
                    f"Field '{name}' must be a whole number from 0 to 2**63 - 1.", param=name)
        for name in ("source", "language", "source_url", "source_title"):
            if values.get(name) is not None and not isinstance(values[name], str):
                raise InvalidRequestError(f"Field '{name}' must be a string.", param=name)
        for name in ("parameters", "timings"):
            if name in values and not isinstance(values[name], dict):
                raise InvalidRequestError(f"Field '{name}' must be an object.", param=name)
        return cls(**values)


def _parse_time(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise InvalidRequestError(
                f"Field '{name}' is not an ISO 8601 timestamp: {value!r}.", param=name
            ) from exc
    if parsed.tzinfo is None:  # naive times in hand-written files are taken as UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed
