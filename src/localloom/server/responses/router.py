"""Routes of OpenAI's Responses API under ``/v1``. No logic here: see :mod:`.service`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from localloom.server.responses.service import ResponsesService

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"])

_STREAM_DOC: dict[int | str, dict[str, Any]] = {200: {
    "description": "A Response object, or a `text/event-stream` of typed events "
                   "(response.created ... response.completed) when `stream` is true."}}


def _service(request: Request) -> ResponsesService:
    service: ResponsesService = request.app.state.responses
    return service


@router.post("/responses", responses=_STREAM_DOC)
async def create_response(request: Request) -> Response:
    """Create a response (OpenAI's ``POST /v1/responses``) on the chat path."""
    return await _service(request).create(request)


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> Response:
    """A stored response (the newest ones, kept in memory)."""
    return JSONResponse(_service(request).retrieve(response_id))


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Response:
    """Forget a stored response."""
    return JSONResponse(_service(request).delete(response_id))
