"""Graceful shutdown: stop taking work, let running requests finish, then cut them off.

On SIGTERM ``localloom serve`` calls :meth:`Drain.begin_threadsafe`. From then on new
requests get 503 with ``Retry-After``; running ones continue for up to
``Settings.drain_timeout`` seconds, after which :attr:`Drain.aborted` is set and every
open stream ends with an error event (see :mod:`localloom.server.sse`).

Example::

    drain = Drain(timeout=10.0)
    app.add_middleware(DrainMiddleware, drain=drain)
    drain.begin()           # on the event loop
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from localloom.server.errors import error_body

__all__ = ["ALWAYS_SERVED", "Drain", "DrainMiddleware"]

# Probes keep answering while draining: supervisors watch them during the shutdown.
ALWAYS_SERVED = frozenset({"/health", "/metrics"})


class Drain:
    """Shutdown state shared by the middleware and the streaming responses."""

    def __init__(self, timeout: float) -> None:
        self.timeout = max(0.0, timeout)
        self.draining = False
        self.active = 0
        self._aborted: asyncio.Event | None = None
        self._timer_started = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server's event loop (called at startup)."""
        self._loop = loop
        self._aborted = asyncio.Event()

    @property
    def aborted(self) -> asyncio.Event:
        """Set when the drain timeout has passed: open streams must end now."""
        if self._aborted is None:
            self.bind(asyncio.get_running_loop())
        assert self._aborted is not None
        return self._aborted

    def begin(self) -> None:
        """Start draining (on the event loop). Idempotent."""
        self.draining = True
        if self._timer_started:
            return
        self._timer_started = True
        aborted = self.aborted
        asyncio.get_running_loop().call_later(self.timeout, aborted.set)

    def begin_threadsafe(self) -> None:
        """Start draining from a signal handler or another thread."""
        self.draining = True  # new requests are refused from this instant
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.begin)


class DrainMiddleware:
    """Counts running requests and refuses new ones (503) while draining."""

    def __init__(self, app: ASGIApp, *, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse when draining, else run and count the request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain.draining and scope["path"] not in ALWAYS_SERVED:
            body = error_body("The server is shutting down and takes no new requests. Retry "
                              "against the restarted server.", "server_error",
                              code="server_shutting_down")
            await JSONResponse(body, 503, headers={"Retry-After": "5",
                                                   "Connection": "close"})(scope, receive, send)
            return
        self.drain.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.active -= 1
