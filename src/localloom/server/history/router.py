"""Routes of the history group. No logic here: see :mod:`.service`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from localloom.server.history.protocol import DeleteResult, HistoryList, SaveRequest
from localloom.server.history.service import HistoryService

__all__ = ["router"]

router = APIRouter(tags=["history"])


def _service(request: Request) -> HistoryService:
    service: HistoryService = request.app.state.history
    return service


# SQLite integers are 64-bit: a larger OFFSET raised OverflowError (a 500, found by schemathesis).
_MAX_OFFSET = 2**63 - 1


@router.get("/api/history", response_model=HistoryList)
async def list_history(request: Request, q: str | None = None,
                       limit: int = Query(50, ge=1, le=1000),
                       offset: int = Query(0, ge=0, le=_MAX_OFFSET),
                       task: str | None = None, model: str | None = None,
                       mode: str | None = None) -> HistoryList:
    """Saved results, newest first; ``q`` searches them, best match first: ``mode`` fts
    (words), semantic (meaning) or hybrid (both; the default once results are embedded)."""
    return await _service(request).list(q=q, limit=limit, offset=offset, task=task,
                                        model=model, mode=mode)


@router.post("/api/history", status_code=201)
async def save_history(body: SaveRequest, request: Request) -> dict[str, Any]:
    """Save a result the client already has (with the page it came from); returns it."""
    return await _service(request).save(body)


# Declared before /api/history/{record_id}, which would otherwise match "export".
@router.get("/api/history/export")
async def export_history(request: Request, format: str = "json") -> Response:
    """Every saved result as a download: json, md (markdown) or csv."""
    text, media, filename = await _service(request).export(format)
    return Response(text, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/api/history/{record_id}")
async def get_history(record_id: str, request: Request) -> dict[str, Any]:
    """One saved result by id (a unique prefix works too)."""
    return await _service(request).get(record_id)


@router.delete("/api/history/{record_id}", response_model=DeleteResult)
async def delete_history(record_id: str, request: Request) -> DeleteResult:
    """Delete one saved result."""
    return await _service(request).delete(record_id)
