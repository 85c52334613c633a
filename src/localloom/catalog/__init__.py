"""Model catalog: built-in entries, user models.toml, hardware fit."""

from __future__ import annotations

from localloom.catalog.entry import ModelEntry, ModelSource

__all__ = ["ModelEntry", "ModelSource"]
