"""Wire shapes of the history group."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["DeleteResult", "HistoryList"]


class HistoryList(BaseModel):
    """A page of saved results (newest first, or best match first with ``q``)."""

    results: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    query: str | None = None


class DeleteResult(BaseModel):
    """The answer to ``DELETE /api/history/{id}``."""

    id: str
    deleted: bool
