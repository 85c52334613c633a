"""Request limits that answer in OpenAI's error shape: body size (413) and requests in flight (503).

Both limits exist to keep one client from filling the server's memory. They answer with the
same JSON error body as every other error, so OpenAI clients raise typed errors and honour
``Retry-After``; uvicorn's and Starlette's own limits answer in plain text.

* A body larger than ``max_body_bytes`` gets 413 ``request_too_large``: at once when its
  ``Content-Length`` says so, or as soon as a chunked body passes the limit.
* A body must arrive within ``body_timeout`` seconds, with no pause of more than a third of
  that, or the request gets 408 ``request_timeout`` and its connection is closed. The body
  is read before the request counts as in flight: 64 sockets trickling a byte every 4 s
  once held every in-flight place, and every other client got 503.
* Beyond ``max_requests`` requests in flight, new ones get 503 ``server_busy`` with
  ``Retry-After`` (``/health`` and ``/metrics`` are always served). The inference queue has
  its own, smaller limit (``Settings.max_queue``); this one also caps management calls.

Example::

    app.add_middleware(LimitsMiddleware, max_body_bytes=16 << 20,
                       max_requests=max_requests(settings))
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localloom.config import Settings
from localloom.server.drain import ALWAYS_SERVED
from localloom.server.errors import error_body

__all__ = ["MAX_BODY_BYTES", "LimitsMiddleware", "max_requests"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Far above any context window's worth of text; stops a client from filling memory.
MAX_BODY_BYTES = 16 * 1024 * 1024


def max_requests(settings: Settings) -> int:
    """Requests allowed in flight at once: room for every slot and queue place, four times."""
    return max(64, 4 * (settings.n_parallel + settings.max_queue))


def _too_large(limit: int) -> JSONResponse:
    # No "Connection: close": closing with the body still arriving resets the connection,
    # and the client may lose this answer. uvicorn reads and drops the rest instead.
    message = (f"The request body is larger than {limit // (1024 * 1024)} MiB. Send less text "
               "per request.")
    return JSONResponse(error_body(message, "invalid_request_error", code="request_too_large"),
                        413)


def _busy() -> JSONResponse:
    body = error_body("The server has too many requests in flight. Retry in a moment.",
                      "server_error", code="server_busy")
    return JSONResponse(body, 503, headers={"Retry-After": "1"})


class LimitsMiddleware:
    """Pure ASGI middleware enforcing the body size, body time and in-flight limits."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES,
                 max_requests: int = 64, body_timeout: float = 30.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_requests = max_requests
        self.body_timeout = body_timeout
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what is over a limit; count the rest while it runs."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_body_bytes:
            await _too_large(self.max_body_bytes)(scope, receive, send)
            return
        replay = receive
        if scope["method"] in _BODY_METHODS:
            body = await self._read_body(receive)
            if isinstance(body, Response):
                await body(scope, receive, send)
                return
            replay = _replaying(body, receive)
        if self.active >= self.max_requests and scope["path"] not in ALWAYS_SERVED:
            await _busy()(scope, replay, send)
            return
        self.active += 1
        try:
            await self.app(scope, replay, send)
        finally:
            self.active -= 1

    async def _read_body(self, receive: Receive) -> bytes | Response:
        """The whole body, or the response that refuses it (too large, too slow, gone)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            left = deadline - loop.time()
            try:
                message = await asyncio.wait_for(receive(), min(left, self.body_timeout / 3))
            except TimeoutError:
                return _too_slow(self.body_timeout)
            if message["type"] == "http.disconnect":
                return Response(status_code=400)  # nobody is left to read it
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return _too_large(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body read already, then the real messages
    (a disconnect) after it."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _too_slow(timeout: float) -> Response:
    body = error_body(f"The request body did not arrive within {timeout:.0f} s (or paused too "
                      "long). Send it at once.", "invalid_request_error",
                      code="request_timeout")
    return JSONResponse(body, 408, headers={"Connection": "close"})


def _declared_length(scope: Scope) -> int:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdigit() else 0
