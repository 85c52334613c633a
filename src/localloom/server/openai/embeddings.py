"""``POST /v1/embeddings``: lease the model, embed in a worker thread, count the tokens.

Example::

    response = await create_embeddings(app.state.openai, body,
                                       default_model=settings.embedding_model)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from localloom.engine.embeddings import EmbeddingRequest
    from localloom.server.openai.service import OpenAIService

__all__ = ["create_embeddings"]


async def create_embeddings(service: OpenAIService, req: EmbeddingRequest, *,
                            default_model: str) -> Response:
    """Embed the request's input with its model (``default_model`` when it names none)."""
    lease = await service.models.acquire(req.model or default_model)
    try:
        result = await service.engine.embeddings.create_from(
            req.model_copy(update={"model": lease.model_id}))
    finally:
        lease.release()
    service.metrics.observe_tokens(lease.model_id, prompt=result.usage.prompt_tokens,
                                   completion=0)
    return JSONResponse(result.model_dump(mode="json"))
