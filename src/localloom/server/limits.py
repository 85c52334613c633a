"""Request limits that answer in OpenAI's error shape: body size (413) and requests in flight (503).

Both limits exist to keep one client from filling the server's memory. They answer with the
same JSON error body as every other error, so OpenAI clients raise typed errors and honour
``Retry-After``; uvicorn's and Starlette's own limits answer in plain text.

* A body larger than ``max_body_bytes`` gets 413 ``request_too_large``: at once when its
  ``Content-Length`` says so, or as soon as a chunked body passes the limit.
* Beyond ``max_requests`` requests in flight, new ones get 503 ``server_busy`` with
  ``Retry-After`` (``/health`` and ``/metrics`` are always served). The inference queue has
  its own, smaller limit (``Settings.max_queue``); this one also caps management calls and
  requests that are still sending their bodies.

Example::

    app.add_middleware(LimitsMiddleware, max_body_bytes=16 << 20,
                       max_requests=max_requests(settings))
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localloom.config import Settings
from localloom.server.drain import ALWAYS_SERVED
from localloom.server.errors import error_body

__all__ = ["MAX_BODY_BYTES", "BodyTooLarge", "LimitsMiddleware", "max_requests"]

# Far above any context window's worth of text; stops a client from filling memory.
MAX_BODY_BYTES = 16 * 1024 * 1024


def max_requests(settings: Settings) -> int:
    """Requests allowed in flight at once: room for every slot and queue place, four times."""
    return max(64, 4 * (settings.n_parallel + settings.max_queue))


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (answered as 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit // (1024 * 1024)} MiB. "
                              "Send less text per request.")


def _too_large(limit: int) -> JSONResponse:
    # No "Connection: close": closing with the body still arriving resets the connection,
    # and the client may lose this answer. uvicorn reads and drops the rest instead.
    exc = BodyTooLarge(limit)
    return JSONResponse(error_body(str(exc.detail), "invalid_request_error",
                                   code="request_too_large"), 413)


def _busy() -> JSONResponse:
    body = error_body("The server has too many requests in flight. Retry in a moment.",
                      "server_error", code="server_busy")
    return JSONResponse(body, 503, headers={"Retry-After": "1"})


class LimitsMiddleware:
    """Pure ASGI middleware enforcing the body size and in-flight request limits."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES,
                 max_requests: int = 64) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_requests = max_requests
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what is over a limit; count the rest while it runs."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_requests and scope["path"] not in ALWAYS_SERVED:
            await _busy()(scope, receive, send)
            return
        if _declared_length(scope) > self.max_body_bytes:
            await _too_large(self.max_body_bytes)(scope, receive, send)
            return
        self.active += 1
        started = False
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def watch_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watch_send)
        except BodyTooLarge:
            # Normally the app's error handler answers; this covers a body read elsewhere.
            if started:
                raise
            await _too_large(self.max_body_bytes)(scope, receive, send)
        finally:
            self.active -= 1


def _declared_length(scope: Scope) -> int:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdigit() else 0
