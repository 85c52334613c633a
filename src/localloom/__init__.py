"""LocalLoom: run language models privately on your own machine.

Example::

    from localloom import Engine
    engine = Engine()
    engine.reload("starter")
    r = engine.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])
    print(r.choices[0].message.content)

Everything a caller gets back is importable from here too: ``Stream``/``AsyncStream`` (what
``create(..., stream=True)`` returns), ``ChatCompletion``, ``Completion``, ``Usage``,
``CreateEmbeddingResponse``, ``LoadedModelInfo``, ``RuntimeStats``; for tasks
``TaskDefinition`` (what ``TaskRegistry.register_task`` takes), ``TaskOption``, and the
events ``TextDelta``/``Progress``/``TaskResult``; for models ``CachedModel``,
``VerifyResult``, ``Hardware``, ``Fit`` and ``Recommendation``.
"""

from __future__ import annotations

# Load order: llama.cpp's libraries before numpy's. With numpy (and its bundled OpenBLAS)
# loaded first, llama_model_load_from_file segfaulted on every model (an Intel Xeon host with
# CUDA 13 and numpy 2.x; loaded after llama.cpp, the same numpy is fine). Every LocalLoom
# process, the probe and grammar children included, imports this package first.
import llama_cpp  # noqa: F401

from localloom._version import __version__
from localloom.catalog import Catalog, Fit, Hardware, ModelEntry, ModelSource, Recommendation
from localloom.config import Settings
from localloom.engine import (
    AsyncEngine,
    AsyncStream,
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    Engine,
    InitProgressReport,
    LoadedModelInfo,
    RuntimeStats,
    Stream,
    Usage,
)
from localloom.engine.embeddings import CreateEmbeddingResponse
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
from localloom.store import CachedModel, ModelStore, VerifyResult, delete_model, has_model_in_cache
from localloom.tasks import (
    Progress,
    TaskDefinition,
    TaskOption,
    TaskRegistry,
    TaskResult,
    TaskRunner,
    TextDelta,
)

__all__ = [
    "AsyncEngine",
    "AsyncStream",
    "CachedModel",
    "Catalog",
    "CatalogEntryError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Completion",
    "ConfigError",
    "ContextLengthExceededError",
    "CreateEmbeddingResponse",
    "DatabaseCorruptError",
    "DatabaseFullError",
    "DatabaseLockedError",
    "DiskSpaceError",
    "DownloadError",
    "Engine",
    "EngineError",
    "Fit",
    "GenerationInterrupted",
    "Hardware",
    "HistoryError",
    "HistoryStore",
    "HubAuthError",
    "InitProgressReport",
    "IntegrityError",
    "InvalidRequestError",
    "LoadedModelInfo",
    "LocalLoomError",
    "ModelEntry",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "ModelSource",
    "ModelStore",
    "OfflineError",
    "Progress",
    "Recommendation",
    "RuntimeStats",
    "SavedResult",
    "ServerBusyError",
    "Settings",
    "StoreError",
    "Stream",
    "TaskDefinition",
    "TaskError",
    "TaskOption",
    "TaskRegistry",
    "TaskResult",
    "TaskRunner",
    "TemplateError",
    "TextDelta",
    "UnsafePathError",
    "Usage",
    "VerifyResult",
    "__version__",
    "delete_model",
    "has_model_in_cache",
]
