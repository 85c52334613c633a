"""Wire models of the OpenAI-compatible group.

Request and completion shapes are the engine's own (:mod:`localloom.engine.protocol`), so a
field and its default are defined once; only the model list is the server's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

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
    "ModelStatus",
]

# loaded: in memory; ready: answers without a download (a verified cached file, a local
# file, an installed model package); download: needs `localloom pull` (or a first request)
# to fetch it; missing: a local model whose file is gone.
ModelStatus = Literal["loaded", "ready", "download", "missing"]


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models`` (OpenAI's ``Model``, plus LocalLoom's fields
    ``status``, ``display_name`` and ``download_size``, which OpenAI clients keep)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "localloom"
    status: ModelStatus = "ready"
    display_name: str | None = None
    download_size: int | None = None  # bytes; None for a loaded file outside the catalog
    remote: str | None = None  # served by these upstreams (comma-separated names)


class ModelList(BaseModel):
    """``GET /v1/models``: in ``data`` every model that answers without a download (loaded,
    cached, a local file, the installed starter); in ``not_ready`` (a LocalLoom extension)
    the rest of the catalog, each with its ``status``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
    not_ready: list[ModelCard] = Field(default_factory=list)
