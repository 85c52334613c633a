"""Routes of the OpenAI-compatible group. No logic here: see :mod:`.service`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from localloom.server.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
)
from localloom.server.openai.service import OpenAIService

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"])

_STREAM_DOC: dict[str, Any] = {
    "description": "The completion, or a `text/event-stream` of chunks ending with "
                   "`data: [DONE]` when `stream` is true."}


def _service(request: Request) -> OpenAIService:
    service: OpenAIService = request.app.state.openai
    return service


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: _STREAM_DOC})
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Create a chat completion (OpenAI's ``POST /v1/chat/completions``)."""
    return await _service(request).chat(request)


@router.post("/completions", response_model=Completion, responses={200: _STREAM_DOC})
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Create a text completion (OpenAI's ``POST /v1/completions``)."""
    return await _service(request).completions(request)


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """Models usable without a download (OpenAI's ``GET /v1/models``)."""
    return _service(request).list_models()


@router.get("/models/{model_id}", response_model=ModelCard)
async def get_model(model_id: str, request: Request) -> ModelCard:
    """One model by id or alias (OpenAI's ``GET /v1/models/{model}``)."""
    return _service(request).get_model(model_id)
