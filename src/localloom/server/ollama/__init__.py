"""Ollama's API on LocalLoom's server: ``/api/chat``, ``/api/generate``, ``/api/tags`` ..."""

from localloom.server.ollama.router import router
from localloom.server.ollama.service import OllamaService

__all__ = ["OllamaService", "router"]
