"""Routes of the OpenAI-compatible group. No logic here: see :mod:`.service`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from localloom.engine.embeddings import CreateEmbeddingResponse, EmbeddingRequest
from localloom.server.body import typed_body
from localloom.server.openai.embeddings import create_embeddings
from localloom.server.openai.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
)
from localloom.server.openai.service import CATCH_ALL, OpenAIService

__all__ = ["openapi_schemas", "router"]

router = APIRouter(prefix="/v1", tags=["openai"])

_STREAM_DOC: dict[str, Any] = {
    "description": "The completion, or a `text/event-stream` of chunks ending with "
                   "`data: [DONE]` when `stream` is true."}


# Parsed once, in a worker thread (server/body.py), and handed on typed.
ChatBody = Annotated[ChatCompletionRequest, Depends(typed_body(ChatCompletionRequest))]
CompletionBody = Annotated[CompletionRequest, Depends(typed_body(CompletionRequest))]
EmbeddingBody = Annotated[EmbeddingRequest, Depends(typed_body(EmbeddingRequest))]


def _body(model: type[ChatCompletionRequest] | type[CompletionRequest] | type[EmbeddingRequest]
          ) -> dict[str, Any]:
    # The body is documented, not declared: FastAPI would parse and validate it on the event
    # loop (400,000 messages held it for seconds); the dependencies above parse it off it.
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def openapi_schemas() -> dict[str, Any]:
    """The request schemas the routes above refer to, for ``components.schemas``."""
    out: dict[str, Any] = {}
    for model in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _service(request: Request) -> OpenAIService:
    service: OpenAIService = request.app.state.openai
    return service


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: _STREAM_DOC}, openapi_extra=_body(ChatCompletionRequest))
async def chat_completions(body: ChatBody, request: Request) -> Response:
    """Create a chat completion (OpenAI's ``POST /v1/chat/completions``)."""
    service: OpenAIService = _service(request)
    return await service.chat(request, body)


@router.post("/completions", response_model=Completion, responses={200: _STREAM_DOC},
             openapi_extra=_body(CompletionRequest))
async def completions(body: CompletionBody, request: Request) -> Response:
    """Create a text completion (OpenAI's ``POST /v1/completions``)."""
    service: OpenAIService = _service(request)
    return await service.completions(request, body)


@router.post("/embeddings", response_model=CreateEmbeddingResponse,
             openapi_extra=_body(EmbeddingRequest))
async def embeddings(body: EmbeddingBody, request: Request) -> Response:
    """Embed text or token arrays (OpenAI's ``POST /v1/embeddings``); the model defaults to
    LOCALLOOM_EMBEDDING_MODEL."""
    return await create_embeddings(_service(request), body,
                                   default_model=request.app.state.parts.settings.embedding_model)


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """Models usable without a download (OpenAI's ``GET /v1/models``)."""
    return _service(request).list_models()


@router.get("/models/{model_id}", response_model=ModelCard)
async def get_model(model_id: str, request: Request) -> ModelCard:
    """One model by id or alias (OpenAI's ``GET /v1/models/{model}``)."""
    return _service(request).get_model(model_id)


# Last: every other path under /v1 gets an OpenAI error saying what is not supported.
@router.api_route(CATCH_ALL, include_in_schema=False,
                  methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def unsupported(path: str, request: Request) -> Response:
    """``/v1/responses``, ``/v1/audio``... : 404 naming what is not supported."""
    raise _service(request).unsupported(request, router.routes)
