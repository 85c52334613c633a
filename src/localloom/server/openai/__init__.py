"""OpenAI-compatible endpoints: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``."""

from __future__ import annotations

from localloom.server.openai.router import openapi_schemas, router
from localloom.server.openai.service import OpenAIService

__all__ = ["OpenAIService", "openapi_schemas", "router"]
