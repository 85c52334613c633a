"""``/api/history``: saved task results, search, export and delete."""

from __future__ import annotations

from localloom.server.history.router import router
from localloom.server.history.service import HistoryService

__all__ = ["HistoryService", "router"]
