"""Wire models of the OpenAI-compatible group.

Request and completion shapes are the engine's own (:mod:`localloom.engine.protocol`), so a
field and its default are defined once; only the model list is the server's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from localloom.engine.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "Completion",
    "CompletionRequest",
    "ModelCard",
    "ModelList",
]


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models`` (OpenAI's ``Model``)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "localloom"


class ModelList(BaseModel):
    """``GET /v1/models``: the models usable without a download (cached or loaded)."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
