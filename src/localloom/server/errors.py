"""One table from exception *types* to HTTP status and OpenAI's error body.

Every error the server answers with has OpenAI's shape, so the official clients raise
their typed errors (``BadRequestError``, ``AuthenticationError``, ``NotFoundError``...)::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "model",
               "code": "model_not_found"}}

The table is matched by walking the exception's MRO, never by reading messages
(llama-cpp-python's server matches message strings, and breaks when they change).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from localloom._validation import invalid_request
from localloom.errors import (
    CatalogEntryError,
    ConfigError,
    ContextLengthExceededError,
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
    UpstreamError,
    UpstreamTimeoutError,
)

__all__ = [
    "ERROR_TABLE",
    "ErrorKind",
    "ErrorReply",
    "error_body",
    "install_error_handlers",
    "reply_for",
]

logger = logging.getLogger("localloom.server")

_INVALID = "invalid_request_error"
_SERVER = "server_error"


@dataclass(frozen=True)
class ErrorKind:
    """How one exception type is answered."""

    status: int
    type: str
    code: str | None = None
    # Reads structured fields off the exception (param, extra body keys, headers).
    details: Callable[[BaseException], _Details] | None = None


@dataclass(frozen=True)
class _Details:
    param: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def _context_details(exc: BaseException) -> _Details:
    assert isinstance(exc, ContextLengthExceededError)
    extra: dict[str, Any] = {"n_prompt_tokens": exc.prompt_tokens, "n_ctx": exc.n_ctx}
    if exc.max_tokens is not None:
        extra["max_tokens"] = exc.max_tokens
    return _Details(param="messages", extra=extra)


def _param_details(exc: BaseException) -> _Details:
    return _Details(param=getattr(exc, "param", None))


def _model_details(exc: BaseException) -> _Details:
    return _Details(param="model")


def _busy_details(exc: BaseException) -> _Details:
    retry = getattr(exc, "retry_after", 1.0)
    return _Details(headers={"Retry-After": str(max(1, math.ceil(retry)))})


# Most specific first is not required (lookup walks the MRO), but it reads better.
ERROR_TABLE: Mapping[type[BaseException], ErrorKind] = {
    ContextLengthExceededError: ErrorKind(
        400, _INVALID, "context_length_exceeded", _context_details
    ),
    InvalidRequestError: ErrorKind(400, _INVALID, "invalid_value", _param_details),
    TemplateError: ErrorKind(400, _INVALID, "chat_template_error"),
    TaskError: ErrorKind(400, _INVALID, "task_error"),
    UnsafePathError: ErrorKind(400, _INVALID, "unsafe_path"),
    ModelNotFoundError: ErrorKind(404, _INVALID, "model_not_found", _model_details),
    ModelNotLoadedError: ErrorKind(404, _INVALID, "model_not_loaded", _model_details),
    OfflineError: ErrorKind(409, _INVALID, "model_not_cached", _model_details),
    # 422, not 5xx: the file will not load on a retry, and OpenAI clients retry 5xx.
    ModelLoadError: ErrorKind(422, _INVALID, "model_load_failed", _model_details),
    ServerBusyError: ErrorKind(503, _SERVER, "server_busy", _busy_details),
    GenerationInterrupted: ErrorKind(503, _SERVER, "generation_interrupted", _busy_details),
    DatabaseLockedError: ErrorKind(503, _SERVER, "database_locked", _busy_details),
    HubAuthError: ErrorKind(502, _SERVER, "hub_auth_failed"),
    IntegrityError: ErrorKind(502, _SERVER, "integrity_error"),
    DownloadError: ErrorKind(502, _SERVER, "download_failed"),
    DiskSpaceError: ErrorKind(507, _SERVER, "insufficient_storage"),
    DatabaseFullError: ErrorKind(507, _SERVER, "insufficient_storage"),
    StoreError: ErrorKind(500, _SERVER, "store_error"),
    CatalogEntryError: ErrorKind(500, _SERVER, "catalog_entry_error"),
    ConfigError: ErrorKind(500, _SERVER, "config_error"),
    UpstreamTimeoutError: ErrorKind(504, _SERVER, "upstream_timeout"),
    UpstreamError: ErrorKind(502, _SERVER, "upstream_error"),
    EngineError: ErrorKind(500, _SERVER, "engine_error"),
    HistoryError: ErrorKind(500, _SERVER, "history_error"),
    LocalLoomError: ErrorKind(500, _SERVER, "internal_error"),
}

_UNEXPECTED = ErrorKind(500, _SERVER, "internal_error")


@dataclass(frozen=True)
class ErrorReply:
    """A finished answer to an error: status, OpenAI body and headers."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]

    def response(self) -> JSONResponse:
        """The reply as a JSON response."""
        return _ErrorJSONResponse(self.body, status_code=self.status, headers=dict(self.headers))


class _ErrorJSONResponse(JSONResponse):
    """JSON that renders any message: a lone surrogate echoed from a request (a model name
    such as ``"\\ud800"``) cannot be UTF-8 encoded, so it is sent as a JSON escape instead."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False,
                              separators=(",", ":")).encode("ascii")


def error_body(
    message: str,
    type_: str,
    *,
    param: str | None = None,
    code: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code", ...extra}}``."""
    error: dict[str, Any] = {"message": message, "type": type_, "param": param, "code": code}
    error.update(extra or {})
    return {"error": error}


def _kind_for(exc: BaseException) -> ErrorKind:
    for cls in type(exc).__mro__:
        kind = ERROR_TABLE.get(cls)
        if kind is not None:
            return kind
    return _UNEXPECTED


def reply_for(exc: BaseException) -> ErrorReply:
    """Map any exception to its reply. Unexpected ones get a generic 500 and are logged."""
    if isinstance(exc, RequestValidationError):
        return _validation_reply(exc)
    if isinstance(exc, StarletteHTTPException):
        type_ = _INVALID if exc.status_code < 500 else _SERVER
        body = error_body(str(exc.detail), type_, code=_http_code(exc.status_code))
        return ErrorReply(exc.status_code, body, dict(exc.headers or {}))
    kind = _kind_for(exc)
    if kind is _UNEXPECTED:
        logger.error("Unexpected error while serving a request", exc_info=exc)
        message = "Internal server error. The server log has the details."
    else:
        message = str(exc)
    details = kind.details(exc) if kind.details else _Details()
    body = error_body(message, kind.type, param=details.param, code=kind.code,
                      extra=details.extra)
    return ErrorReply(kind.status, body, details.headers)


def _http_code(status: int) -> str:
    return {401: "invalid_api_key", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "request_too_large",
            415: "unsupported_media_type"}.get(status, str(status))


def _validation_reply(exc: RequestValidationError) -> ErrorReply:
    errors = list(exc.errors())
    first: Mapping[str, Any] = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        where = first.get("ctx", {}).get("error", "syntax error")
        message = f"The request body is not valid JSON ({where}). Send one JSON object."
        return ErrorReply(400, error_body(message, _INVALID, code="invalid_json"), {})
    # FastAPI's loc starts with where the value came from (body, query, path): not a field.
    errors = [{**e, "loc": tuple(e.get("loc", ()))[1:]} for e in errors]
    return reply_for(invalid_request(errors, advice="Fix it and send the request again."))


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    return reply_for(exc).response()


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through :func:`reply_for`."""
    app.add_exception_handler(RequestValidationError, _handle)
    app.add_exception_handler(StarletteHTTPException, _handle)
    app.add_exception_handler(LocalLoomError, _handle)
    app.add_exception_handler(Exception, _handle)
