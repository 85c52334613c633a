"""Wire shapes of the history group."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DeleteResult", "HistoryList", "SaveRequest"]

_MAX_TEXT = 4_000_000  # characters; a whole long page and its summary fit
# SQLite stores integers up to 2**63 - 1; a larger count was a 500 (found by schemathesis).
_MAX_TOKENS = 2**31 - 1


class SaveRequest(BaseModel):
    """The body of ``POST /api/history``: a result the client already has (the browser
    extension's Save button), with the page it came from."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=100)
    model: str = Field(min_length=1, max_length=200)
    original: str = Field(min_length=1, max_length=_MAX_TEXT)
    result: str = Field(min_length=1, max_length=_MAX_TEXT)
    language: str | None = Field(None, max_length=20)
    source_url: str | None = Field(None, max_length=8192)
    source_title: str | None = Field(None, max_length=1000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    prompt_tokens: int = Field(0, ge=0, le=_MAX_TOKENS)
    completion_tokens: int = Field(0, ge=0, le=_MAX_TOKENS)

    @field_validator("source_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        # Saved pages are linked from the side panel: only web addresses become links.
        if value is not None and not value.startswith(("http://", "https://", "file://")):
            raise ValueError("source_url must be an http(s) or file URL")
        return value


class HistoryList(BaseModel):
    """A page of saved results (newest first, or best match first with ``q``)."""

    results: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    query: str | None = None
    # With a query: how it was searched (fts, semantic or hybrid); each result then has a
    # "score" unless fts.
    mode: str | None = None


class DeleteResult(BaseModel):
    """The answer to ``DELETE /api/history/{id}``."""

    id: str
    deleted: bool
