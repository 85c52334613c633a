"""Routes of the tasks group. No logic here: see :mod:`.service`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from localloom.server.pairing import PAIRING_SCOPE_KEY
from localloom.server.tasks.protocol import (
    LanguageRequest,
    LanguageResponse,
    TaskRequest,
    TasksResponse,
)
from localloom.server.tasks.service import TasksService

__all__ = ["router"]

router = APIRouter(tags=["tasks"])

_SSE_DOC: dict[int | str, dict[str, Any]] = {200: {
    "description": "`text/event-stream`: `delta` (`{text}`) and `progress` (`{done, total, "
                   "text}`) events, then one `done` (`{text, usage, saved_id, ...}`) or "
                   "`error` event.",
    "content": {"text/event-stream": {}}}}


def _service(request: Request) -> TasksService:
    service: TasksService = request.app.state.tasks
    return service


@router.get("/api/tasks", response_model=TasksResponse)
async def list_tasks(request: Request) -> TasksResponse:
    """The tasks this server runs: built-in ones and the user's from tasks.toml."""
    return _service(request).list_tasks()


@router.post("/api/tasks/{task}", responses=_SSE_DOC)
async def run_task(task: str, body: TaskRequest, request: Request) -> Response:
    """Run a task on a text, streaming the answer; optionally save it to the history."""
    return await _service(request).run(task, body,
                                       pairing=request.scope.get(PAIRING_SCOPE_KEY),
                                       store=request.app.state.parts.store,
                                       disconnected=request.is_disconnected)


@router.post("/api/language", response_model=LanguageResponse)
async def detect_language(body: LanguageRequest, request: Request) -> LanguageResponse:
    """The text's language (the translate task's detector; no model runs)."""
    return await _service(request).detect_language(body.text)
