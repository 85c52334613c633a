"""The history endpoints' logic over a :class:`HistoryStore` (SQLite, run off the loop).

Example::

    service = HistoryService(settings)   # the user's store, opened on first use
    page = await service.list(q="volcano", limit=20)
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from localloom.config import Settings
from localloom.errors import InvalidRequestError
from localloom.history import HistoryStore, SavedResult
from localloom.history.formats import normalize_format
from localloom.history.semantic import SemanticIndex, check_mode
from localloom.server.history.protocol import DeleteResult, HistoryList, SaveRequest
from localloom.server.history.semantic import HistoryIndexer

if TYPE_CHECKING:
    from localloom.engine import AsyncEngine
    from localloom.server.models_manager import ModelsManager

__all__ = ["EXPORT_TYPES", "HistoryService"]

# Export format -> (media type, file extension).
EXPORT_TYPES = {"json": ("application/json", "json"),
                "markdown": ("text/markdown; charset=utf-8", "md"),
                "csv": ("text/csv; charset=utf-8", "csv")}
_MAX_RANKED = 10_000  # matches ranked for one semantic or hybrid search


class HistoryService:
    """Serves ``/api/history``."""

    def __init__(self, settings: Settings, store: HistoryStore | None = None, *,
                 engine: AsyncEngine | None = None, models: ModelsManager | None = None
                 ) -> None:
        self.settings = settings
        self._store = store
        self._lock = threading.Lock()
        # Search by meaning needs the engine; without one (tests of the store) it is off.
        self.indexer = (HistoryIndexer(settings=settings, engine=engine, models=models,
                                       store=lambda: self.store)
                        if engine is not None and models is not None else None)

    @property
    def store(self) -> HistoryStore:
        """The history database; opened on first use so a broken one fails only here."""
        with self._lock:
            if self._store is None:
                self._store = HistoryStore.for_settings(self.settings)
            return self._store

    async def list(self, *, q: str | None = None, limit: int = 50, offset: int = 0,
                   task: str | None = None, model: str | None = None,
                   mode: str | None = None) -> HistoryList:
        """A page of results; ``q`` searches by words (fts), meaning (semantic) or both
        (hybrid: the default once results are embedded, fts before)."""
        if not (q and q.strip()):
            records = await asyncio.to_thread(self.store.list, limit, offset, task=task,
                                              model=model)
            total = await asyncio.to_thread(self.store.count, task=task, model=model)
            return HistoryList(results=[r.to_dict() for r in records], total=total,
                               limit=limit, offset=offset, query=q or None)
        chosen = check_mode(mode) if mode else await self._default_mode()
        if chosen == "fts" or self.indexer is None:
            if chosen != "fts":
                raise InvalidRequestError(f"Search mode '{chosen}' needs the server's engine; "
                                          "use mode=fts here.", param="mode")

            def read() -> tuple[list[dict[str, Any]], int]:
                found = self.store.search(q, limit, offset, task=task, model=model)
                return [r.to_dict() for r in found], self.store.search_count(
                    q, task=task, model=model)

            results, total = await asyncio.to_thread(read)
        else:
            vector = await self.indexer.embed([q])
            index = self.indexer.index(lambda texts: vector)
            # Every match is ranked (exact cosine is cheap), so the page's total is exact.
            hits = await asyncio.to_thread(index.search, q, _MAX_RANKED, mode=chosen,
                                           task=task, model=model)
            results = [h.record.to_dict() | {"score": h.score}
                       for h in hits[offset:offset + limit]]
            total = len(hits)
        return HistoryList(results=results, total=total, limit=limit, offset=offset,
                           query=q, mode=chosen)

    async def _default_mode(self) -> str:
        if self.indexer is None:
            return "fts"
        index: SemanticIndex = self.indexer.index()
        return "hybrid" if await asyncio.to_thread(index.count) else "fts"

    async def save(self, body: SaveRequest) -> dict[str, Any]:
        """Store a result sent by a client; the page URL doubles as its ``source``."""
        record = SavedResult(task=body.task, model=body.model, original=body.original,
                             result=body.result, parameters=body.parameters,
                             language=body.language, source=body.source_url,
                             source_url=body.source_url, source_title=body.source_title,
                             prompt_tokens=body.prompt_tokens,
                             completion_tokens=body.completion_tokens)
        saved = await asyncio.to_thread(self.store.save, record)
        if self.indexer is not None:
            self.indexer.poke()  # embedded in the background
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
