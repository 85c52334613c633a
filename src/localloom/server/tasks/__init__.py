"""``POST /api/tasks/{task}`` (streamed as SSE) and ``GET /api/tasks``."""

from __future__ import annotations

from localloom.server.tasks.router import router
from localloom.server.tasks.service import TasksService

__all__ = ["TasksService", "router"]
