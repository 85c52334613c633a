"""Routes of the management group. No logic here: see :mod:`.service`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from localloom.server.management.protocol import (
    ActionResult,
    Health,
    ModelsResponse,
    PsResponse,
    StatusResponse,
)
from localloom.server.management.service import ManagementService
from localloom.server.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["management"])

_SSE_DOC: dict[int | str, dict[str, Any]] = {200: {
    "description": "`text/event-stream`: `progress` events (`{progress, text, ...}`), then one "
                   "`done` or `error` event.",
    "content": {"text/event-stream": {}}}}


def _service(request: Request) -> ManagementService:
    service: ManagementService = request.app.state.management
    return service


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    """Liveness probe; public (no token), tells nothing about models."""
    return Health(status="draining" if _service(request).drain.draining else "ok")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    text = await _service(request).metrics_text()
    return PlainTextResponse(text, media_type=CONTENT_TYPE)


@router.get("/api/models", response_model=ModelsResponse)
async def list_models(request: Request) -> ModelsResponse:
    """The catalog with size, RAM needs, fit on this machine, cache and load state."""
    return await _service(request).list_models()


@router.post("/api/models/{model_id}/pull", responses=_SSE_DOC)
async def pull_model(model_id: str, request: Request) -> Response:
    """Download and verify a model, streaming progress."""
    return _service(request).pull(model_id)


@router.post("/api/models/{model_id}/load", responses=_SSE_DOC)
async def load_model(model_id: str, request: Request) -> Response:
    """Load a model (downloading it first if needed), streaming progress."""
    return _service(request).load(model_id)


@router.post("/api/models/{model_id}/unload", response_model=ActionResult)
async def unload_model(model_id: str, request: Request) -> ActionResult:
    """Unload a model now."""
    return await _service(request).unload(model_id)


@router.delete("/api/models/{model_id}", response_model=ActionResult)
async def delete_model(model_id: str, request: Request) -> ActionResult:
    """Unload a model and delete its downloaded file."""
    return await _service(request).delete(model_id)


@router.get("/api/ps", response_model=PsResponse)
async def ps(request: Request) -> PsResponse:
    """Loaded models, how long they have been loaded, and when they unload."""
    return _service(request).ps()


@router.get("/api/status", response_model=StatusResponse)
async def status(request: Request) -> StatusResponse:
    """Version, uptime, serving settings, loaded models and engine statistics."""
    return await _service(request).status()
