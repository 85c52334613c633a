"""Management endpoints: ``/api/models``, pull/load/unload/delete, ``/api/ps``, status."""

from __future__ import annotations

from localloom.server.management.router import router
from localloom.server.management.service import ManagementService

__all__ = ["ManagementService", "router"]
