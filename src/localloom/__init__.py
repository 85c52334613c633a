"""LocalLoom: run language models privately on your own machine.

Example::

    from localloom import Engine
    engine = Engine()
    engine.reload("starter")
    r = engine.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])
    print(r.choices[0].message.content)
"""

from __future__ import annotations

# Load order: llama.cpp's libraries before numpy's. With numpy (and its bundled OpenBLAS)
# loaded first, llama_model_load_from_file segfaulted on every model (an Intel Xeon host with
# CUDA 13 and numpy 2.x; loaded after llama.cpp, the same numpy is fine). Every LocalLoom
# process, the probe and grammar children included, imports this package first.
import llama_cpp  # noqa: F401

from localloom._version import __version__
from localloom.catalog import Catalog, ModelEntry, ModelSource
from localloom.config import Settings
from localloom.engine import (
    AsyncEngine,
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    Engine,
    InitProgressReport,
    RuntimeStats,
)
from localloom.errors import (
    CatalogEntryError,
    ConfigError,
    ContextLengthExceededError,
    DatabaseCorruptError,
    DatabaseFullError,
    DatabaseLockedError,
    DiskSpaceError,
    DownloadError,
    EngineError,
    GenerationInterrupted,
    HistoryError,
    HubAuthError,
    IntegrityError,
    InvalidRequestError,
    LocalLoomError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotLoadedError,
    OfflineError,
    ServerBusyError,
    StoreError,
    TaskError,
    TemplateError,
    UnsafePathError,
)
from localloom.history import HistoryStore, SavedResult
from localloom.store import ModelStore, delete_model, has_model_in_cache
from localloom.tasks import TaskResult, TaskRunner

__all__ = [
    "AsyncEngine",
    "Catalog",
    "CatalogEntryError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Completion",
    "ConfigError",
    "ContextLengthExceededError",
    "DatabaseCorruptError",
    "DatabaseFullError",
    "DatabaseLockedError",
    "DiskSpaceError",
    "DownloadError",
    "Engine",
    "EngineError",
    "GenerationInterrupted",
    "HistoryError",
    "HistoryStore",
    "HubAuthError",
    "InitProgressReport",
    "IntegrityError",
    "InvalidRequestError",
    "LocalLoomError",
    "ModelEntry",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "ModelSource",
    "ModelStore",
    "OfflineError",
    "RuntimeStats",
    "SavedResult",
    "ServerBusyError",
    "Settings",
    "StoreError",
    "TaskError",
    "TaskResult",
    "TaskRunner",
    "TemplateError",
    "UnsafePathError",
    "__version__",
    "delete_model",
    "has_model_in_cache",
]
