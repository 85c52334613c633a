"""Routes of Ollama's API (``/api/chat``, ``/api/tags`` ...). No logic here: see
:mod:`.service`. ``GET /api/ps`` is the management group's (Ollama's shape plus LocalLoom's
fields)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from localloom.server.ollama.service import OllamaService

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["ollama"])

_NDJSON: dict[int | str, dict[str, Any]] = {200: {
    "description": "`application/x-ndjson` lines while `stream` is true (the default), "
                   "else one JSON object.", "content": {"application/x-ndjson": {}}}}


def _service(request: Request) -> OllamaService:
    service: OllamaService = request.app.state.ollama
    return service


@router.post("/chat", responses=_NDJSON)
async def chat(request: Request) -> Response:
    """Ollama's chat: messages in, message deltas out."""
    service = _service(request)
    return await service.answer(lambda: service.chat(request))


@router.post("/generate", responses=_NDJSON)
async def generate(request: Request) -> Response:
    """Ollama's generate: a prompt (with ``system``), or a raw completion."""
    service = _service(request)
    return await service.answer(lambda: service.generate(request))


@router.post("/embed")
async def embed(request: Request) -> Response:
    """Ollama's embed: one vector per input."""
    service = _service(request)
    return await service.answer(lambda: service.embed(request))


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    """Ollama's older embeddings endpoint (``prompt`` in, ``embedding`` out)."""
    service = _service(request)
    return await service.answer(lambda: service.embed(request, legacy=True))


@router.get("/tags")
async def tags(request: Request) -> Response:
    """Ollama's model list: models that answer without a download."""
    return JSONResponse(_service(request).tags())


@router.post("/show")
async def show(request: Request) -> Response:
    """Ollama's model details."""
    service = _service(request)
    return await service.answer(lambda: service.show(request))


@router.post("/pull", responses=_NDJSON)
async def pull(request: Request) -> Response:
    """Ollama's pull: download and verify a catalog model, streaming progress."""
    service = _service(request)
    return await service.answer(lambda: service.pull(request))


@router.delete("/delete")
async def delete(request: Request) -> Response:
    """Ollama's delete: unload a model and delete its downloaded file."""
    service = _service(request)
    return await service.answer(lambda: service.delete(request))


@router.get("/version")
async def version(request: Request) -> Response:
    """The Ollama API version LocalLoom follows, and LocalLoom's own version."""
    return JSONResponse(_service(request).version())
