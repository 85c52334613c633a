"""The one exception tree of LocalLoom.

Every error LocalLoom raises on purpose derives from :class:`LocalLoomError`, and every
message says what happened and what to do next. Errors from llama.cpp, huggingface_hub,
httpx and sqlite are wrapped at the seam (``raise ... from exc``).

```
LocalLoomError
├── ConfigError                  bad settings or a bad models.toml entry
│   └── CatalogEntryError        one invalid user model entry (file, entry, field)
├── ModelNotFoundError           unknown model id (with "did you mean" suggestions)
├── StoreError
│   ├── DownloadError            network or hub failure while fetching weights
│   │   ├── OfflineError         offline mode and no cached copy
│   │   └── HubAuthError         401/403 from the hub (gated repo, bad HF_TOKEN)
│   ├── IntegrityError           size or sha256 mismatch; nothing is promoted
│   ├── DiskSpaceError           not enough free disk for the download
│   └── UnsafePathError          a file or revision name that would escape the cache
├── EngineError
│   ├── ModelLoadError           corrupt, truncated or unsupported GGUF
│   ├── ModelNotLoadedError      generation asked of a model that is not loaded
│   ├── ContextLengthExceededError  prompt (+ max_tokens) does not fit n_ctx
│   ├── TemplateError            chat template failed to render (or was refused)
│   ├── GenerationInterrupted    the request was cancelled or interrupted
│   ├── IllegalTransitionError   a request or sequence was moved to a state it cannot reach
│   └── UpstreamError            a remote engine (upstream) failed or cut a stream off
│       └── UpstreamTimeoutError the upstream did not answer in time
├── InvalidRequestError          a request parameter is out of range (names the field)
├── ServerBusyError              the request queue is full; retry later
├── HistoryError                 the saved-results database failed
│   ├── DatabaseLockedError
│   ├── DatabaseCorruptError
│   └── DatabaseFullError        the disk (or quota) is full
└── TaskError                    unknown task, bad input document, fetch failure
```
"""

from __future__ import annotations

__all__ = [
    "CatalogEntryError",
    "ConfigError",
    "ContextLengthExceededError",
    "DatabaseCorruptError",
    "DatabaseFullError",
    "DatabaseLockedError",
    "DiskSpaceError",
    "DownloadError",
    "EngineError",
    "GenerationInterrupted",
    "HistoryError",
    "HubAuthError",
    "IllegalTransitionError",
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
    "UpstreamError",
    "UpstreamTimeoutError",
]


class LocalLoomError(Exception):
    """Root of every error LocalLoom raises on purpose."""


class ConfigError(LocalLoomError):
    """Settings or a configuration file are invalid."""


class CatalogEntryError(ConfigError):
    """One user model entry is invalid.

    Carries the file, the entry id and the field so the user can fix exactly that line.
    """

    def __init__(self, file: str, entry: str, field: str, problem: str) -> None:
        self.file = file
        self.entry = entry
        self.field = field
        self.problem = problem
        super().__init__(f"{file}: model '{entry}', field '{field}': {problem}")


class ModelNotFoundError(LocalLoomError):
    """The model id is not in the catalog (or not loaded, for the server's `model` field)."""

    def __init__(self, model_id: str, suggestions: list[str] | None = None) -> None:
        self.model_id = model_id
        self.suggestions = list(suggestions or [])
        hint = ""
        if self.suggestions:
            hint = " Did you mean " + " or ".join(f"'{s}'" for s in self.suggestions) + "?"
        super().__init__(
            f"Model '{model_id}' is not in the catalog.{hint} `localloom models` lists them."
        )


class StoreError(LocalLoomError):
    """The model store could not provide a verified file."""


class DownloadError(StoreError):
    """Fetching weights failed; a partial file is kept only as a resumable `.part`."""


class OfflineError(DownloadError):
    """Offline mode is on (or the hub is unreachable) and the model is not cached."""


class HubAuthError(DownloadError):
    """The hub answered 401/403: the repo is gated or HF_TOKEN is missing or wrong."""


class IntegrityError(StoreError):
    """A downloaded or cached file does not match its expected size or sha256."""


class DiskSpaceError(StoreError):
    """Not enough free disk space for a download."""


class UnsafePathError(StoreError):
    """A repo, file or revision name would place a file outside the cache."""


class EngineError(LocalLoomError):
    """The inference engine failed."""


class ModelLoadError(EngineError):
    """A model file could not be loaded (corrupt, truncated or unsupported)."""


class ModelNotLoadedError(EngineError):
    """Generation was asked of a model that is not loaded."""


class ContextLengthExceededError(EngineError):
    """The prompt, plus the tokens asked for, does not fit the model's context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int, max_tokens: int | None = None, *,
                 at_least: bool = False) -> None:
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.at_least = at_least  # counted without tokenizing all of it: a lower bound
        asked = f" plus max_tokens={max_tokens}" if max_tokens else ""
        has = f"at least {prompt_tokens}" if at_least else str(prompt_tokens)
        super().__init__(
            f"The prompt has {has} tokens{asked}, but the model's context window is "
            f"{n_ctx} tokens. Shorten the input, lower max_tokens, or load the model with a "
            "larger context (LOCALLOOM_N_CTX)."
        )


class TemplateError(EngineError):
    """A chat template failed to render or was refused by the sandbox."""


class GenerationInterrupted(EngineError):
    """A generation was cancelled before it finished."""


class IllegalTransitionError(EngineError):
    """The scheduler moved a request or a sequence to a state it cannot reach (a bug)."""

    def __init__(self, what: str, old: str, new: str) -> None:
        self.what = what
        self.old = old
        self.new = new
        super().__init__(
            f"A {what} cannot go from {old} to {new}. This is a bug in LocalLoom's scheduler: "
            "reload the model (engine.reload) and report it with the requests that led here."
        )


class UpstreamError(EngineError):
    """A remote engine serving the model failed (unreachable, 5xx, stream cut off)."""


class UpstreamTimeoutError(UpstreamError):
    """The remote engine did not answer within its timeout."""


class InvalidRequestError(LocalLoomError):
    """A request parameter is invalid; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class ServerBusyError(LocalLoomError):
    """Too many requests are waiting; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class HistoryError(LocalLoomError):
    """The saved-results database failed."""


class DatabaseLockedError(HistoryError):
    """Another process holds the database lock for too long."""


class DatabaseCorruptError(HistoryError):
    """The database file is damaged."""


class DatabaseFullError(HistoryError):
    """The disk holding the database is full: nothing more can be saved until it has room."""


class TaskError(LocalLoomError):
    """A task could not run (unknown task, unreadable input, failed fetch)."""
