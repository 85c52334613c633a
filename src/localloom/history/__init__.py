"""Saved results: a SQLite store with migrations, FTS5 search, export and import.

Example::

    from localloom.history import HistoryStore, SavedResult
    with HistoryStore.for_settings(settings) as store:
        store.save(SavedResult(task="summarize", model="starter", original=text, result=s))
        print(store.export("markdown"))
"""

from __future__ import annotations

from localloom.history.formats import ExportFormat
from localloom.history.record import SavedResult
from localloom.history.store import HistoryStore

__all__ = ["ExportFormat", "HistoryStore", "SavedResult"]
