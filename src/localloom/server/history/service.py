"""The history endpoints' logic over a :class:`HistoryStore` (SQLite, run off the loop).

Example::

    service = HistoryService(settings)   # the user's store, opened on first use
    page = await service.list(q="volcano", limit=20)
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from fastapi import HTTPException

from localloom.config import Settings
from localloom.history import HistoryStore, SavedResult
from localloom.history.formats import normalize_format
from localloom.server.history.protocol import DeleteResult, HistoryList, SaveRequest

__all__ = ["EXPORT_TYPES", "HistoryService"]

# Export format -> (media type, file extension).
EXPORT_TYPES = {"json": ("application/json", "json"),
                "markdown": ("text/markdown; charset=utf-8", "md"),
                "csv": ("text/csv; charset=utf-8", "csv")}


class HistoryService:
    """Serves ``/api/history``."""

    def __init__(self, settings: Settings, store: HistoryStore | None = None) -> None:
        self.settings = settings
        self._store = store
        self._lock = threading.Lock()

    @property
    def store(self) -> HistoryStore:
        """The history database; opened on first use so a broken one fails only here."""
        with self._lock:
            if self._store is None:
                self._store = HistoryStore.for_settings(self.settings)
            return self._store

    async def list(self, *, q: str | None = None, limit: int = 50, offset: int = 0,
                   task: str | None = None, model: str | None = None) -> HistoryList:
        """A page of results; ``q`` searches the original text, the result and the task."""
        def read() -> tuple[list[dict[str, Any]], int]:
            if q and q.strip():
                found = self.store.search(q, limit, offset, task=task, model=model)
                return [r.to_dict() for r in found], self.store.search_count(
                    q, task=task, model=model)
            records = self.store.list(limit, offset, task=task, model=model)
            return [r.to_dict() for r in records], self.store.count(task=task, model=model)

        results, total = await asyncio.to_thread(read)
        return HistoryList(results=results, total=total, limit=limit, offset=offset,
                           query=q or None)

    async def save(self, body: SaveRequest) -> dict[str, Any]:
        """Store a result sent by a client; the page URL doubles as its ``source``."""
        record = SavedResult(task=body.task, model=body.model, original=body.original,
                             result=body.result, parameters=body.parameters,
                             language=body.language, source=body.source_url,
                             source_url=body.source_url, source_title=body.source_title,
                             prompt_tokens=body.prompt_tokens,
                             completion_tokens=body.completion_tokens)
        saved = await asyncio.to_thread(self.store.save, record)
        return saved.to_dict()

    async def get(self, record_id: str) -> dict[str, Any]:
        """One result by id (or a unique id prefix)."""
        record = await asyncio.to_thread(self.store.get, record_id)
        if record is None:
            raise _not_found(record_id)
        return record.to_dict()

    async def delete(self, record_id: str) -> DeleteResult:
        """Delete one result: by its full id or a unique prefix of 8 characters or more."""
        full = await asyncio.to_thread(self.store.resolve_id, record_id, min_prefix=8)
        if full is None or not await asyncio.to_thread(self.store.delete, full):
            raise _not_found(record_id)
        return DeleteResult(id=full, deleted=True)

    async def export(self, format: str) -> tuple[str, str, str]:
        """Every result as (text, media type, file name) in json, md (markdown) or csv."""
        kind = normalize_format(format)
        text = await asyncio.to_thread(self.store.export, kind)
        media, ext = EXPORT_TYPES[kind]
        return text, media, f"localloom-history.{ext}"


def _not_found(record_id: str) -> HTTPException:
    return HTTPException(404, f"No saved result has the id '{record_id}'. GET /api/history "
                              "lists the saved results.")
