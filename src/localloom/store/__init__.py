"""The model store: downloads, cache and integrity.

Example::

    from localloom.config import Settings
    from localloom.store import ModelStore, has_model_in_cache

    store = ModelStore(Settings())
    path = store.ensure(entry)               # verified GGUF path, pulled if needed
    has_model_in_cache("TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC")
"""

from __future__ import annotations

from localloom.catalog.entry import ModelEntry
from localloom.config import Settings
from localloom.store._progress import ProgressCallback
from localloom.store._store import CachedModel, ModelStore, VerifyResult, offline_error

__all__ = [
    "CachedModel",
    "ModelStore",
    "ProgressCallback",
    "VerifyResult",
    "delete_model",
    "has_model_in_cache",
    "lookup",
    "offline_error",
]


def lookup(model_id: str, settings: Settings) -> ModelEntry:
    """The catalog entry for ``model_id`` (raises ModelNotFoundError with suggestions)."""
    from localloom.catalog.catalog import Catalog  # the catalog may import the store

    entry: ModelEntry = Catalog(settings).get(model_id)
    return entry


def has_model_in_cache(model_id: str, settings: Settings | None = None) -> bool:
    """True if the model's verified file is in the cache (WebLLM's ``hasModelInCache``).

    Example::

        if not has_model_in_cache("starter"):
            print("run `localloom pull starter` first")
    """
    settings = settings if settings is not None else Settings()
    return ModelStore(settings).is_cached(lookup(model_id, settings))


def delete_model(model_id: str, settings: Settings | None = None) -> bool:
    """Delete the model's downloaded file (WebLLM's ``deleteModelAllInfoInCache``).

    Returns True if something was removed. A local model's file is never deleted.
    """
    settings = settings if settings is not None else Settings()
    return ModelStore(settings).delete(lookup(model_id, settings))
