"""LocalLoom: run language models privately on your own machine.

Example::

    from localloom import Engine
    engine = Engine()
    engine.reload("starter")
    r = engine.chat.completions.create(messages=[{"role": "user", "content": "Hi"}])
    print(r.choices[0].message.content)
"""

from __future__ import annotations

from localloom.config import Settings
from localloom.errors import (
    CatalogEntryError,
    ConfigError,
    ContextLengthExceededError,
    DatabaseCorruptError,
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

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "Settings",
    "CatalogEntryError",
    "ConfigError",
    "ContextLengthExceededError",
    "DatabaseCorruptError",
    "DatabaseLockedError",
    "DiskSpaceError",
    "DownloadError",
    "EngineError",
    "GenerationInterrupted",
    "HistoryError",
    "HubAuthError",
    "IntegrityError",
    "InvalidRequestError",
    "LocalLoomError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotLoadedError",
    "OfflineError",
    "ServerBusyError",
    "StoreError",
    "TaskError",
    "TemplateError",
    "UnsafePathError",
]
