"""OpenAI's Responses API on LocalLoom's server: ``POST /v1/responses`` and stored ones."""

from localloom.server.responses.router import router
from localloom.server.responses.service import ResponsesService

__all__ = ["ResponsesService", "router"]
