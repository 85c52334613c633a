"""Run the server under uvicorn: safe binding, a log that never shows the token, draining.

Example::

    from localloom import Settings
    from localloom.server.runner import serve
    serve(Settings(), on_ready=print)       # prints the sign-in URL once listening
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, cast

import uvicorn

from localloom.config import Settings
from localloom.errors import ConfigError
from localloom.server.app import create_app
from localloom.server.drain import Drain
from localloom.server.errors import error_body
from localloom.server.limits import max_requests
from localloom.server.security import (
    REQUEST_TARGET_KEY,
    RedactTokenFilter,
    TruncateFilter,
    is_loopback_host,
    load_or_create_token,
)

__all__ = ["bind_socket", "check_bind", "connection_limit", "http_protocol", "log_config", "serve",
           "sign_in_url"]

# Open files kept free of connections: model files, logs, the history database.
_SPARE_FILES = 64


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless the user asked for it explicitly."""
    if not is_loopback_host(host) and not allow_remote:
        raise ConfigError(
            f"Binding to {host} would let other machines reach this server. Pass "
            "--allow-remote to do it anyway (the token is still required), or use 127.0.0.1.")


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one)."""
    bare = host.strip("[]")
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(bare).version == 6 else socket.AF_INET
    except ValueError:  # a name such as "localhost"
        family = socket.AF_INET
        bare = socket.gethostbyname(bare)
    try:
        sock = socket.create_server((bare, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Another program may use "
            "the port: pick another with --port (0 picks a free one).") from exc
    # Accepted connections inherit this. asyncio sets it only on sockets it created itself
    # (protocol IPPROTO_TCP, not 0 as here); without it every small response that uvicorn
    # writes in two parts waits for the client's delayed ACK: about 40 ms a request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def sign_in_url(host: str, port: int, token: str) -> str:
    """The URL that opens the UI signed in: the token rides in the fragment, which the
    browser keeps to the page (it is never sent to any server, nor in a Referer)."""
    bare = host.strip("[]")
    if bare in ("0.0.0.0", ""):
        bare = "127.0.0.1"
    elif bare == "::":
        bare = "::1"
    shown = f"[{bare}]" if ":" in bare else bare
    return f"http://{shown}:{port}/#token={token}"


def log_config(token: str, level: str = "info") -> dict[str, Any]:
    """uvicorn's logging, on stderr, every line cut to a few KB and the token redacted."""
    redact = {"()": RedactTokenFilter, "secrets": [token]}
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "filters": ["truncate", "redact"]}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": redact, "truncate": {"()": TruncateFilter}},
        "formatters": {
            "default": {"()": "uvicorn.logging.DefaultFormatter",
                        "fmt": "%(levelprefix)s %(message)s", "use_colors": None},
            "access": {"()": "uvicorn.logging.AccessFormatter",
                       "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" '
                              "%(status_code)s"},
        },
        "handlers": {"default": {**handler, "formatter": "default"},
                     "access": {**handler, "formatter": "access"}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            "localloom": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }


def http_protocol(header_timeout: float = 15.0) -> type[asyncio.Protocol] | str:
    """uvicorn's HTTP protocol, keeping an absolute-form request target for the Host check,
    and closing connections that do not finish their headers within ``header_timeout``.

    httptools keeps only the path of ``GET http://evil.example/v1/models HTTP/1.1``; the
    authority, which RFC 9112 says replaces ``Host``, is lost. This subclass puts the raw
    target in the scope (``REQUEST_TARGET_KEY``) so the security middleware can refuse it.
    Without httptools, h11 keeps the whole target in ``raw_path`` anyway. uvicorn itself
    never closes a connection that trickles its headers (slowloris): 200 such sockets stayed
    open for as long as their senders liked.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    class TargetKeepingProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _start_header_timer(self) -> None:
            self._stop_header_timer()
            self._header_timer = asyncio.get_running_loop().call_later(
                header_timeout, self._header_deadline)

        def _stop_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_deadline(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._start_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_timer()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:  # a next request on a kept-alive connection
                self._start_header_timer()

        def send_400_response(self, msg: str) -> None:
            # A request line or header that does not parse (a 100 KB URL, a bad
            # Content-Length): OpenAI's JSON error, as for every other refusal.
            body = json.dumps(error_body(
                f"{msg} The request line or a header is malformed or too long.",
                "invalid_request_error", code="bad_request")).encode()
            head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n")
            self.transport.write(head + body)
            self.transport.close()

        def on_headers_complete(self) -> None:
            self._stop_header_timer()
            target = bytes(getattr(self, "url", b"/"))
            super().on_headers_complete()
            if not target.startswith(b"/"):
                # The request's task is created above but has not run yet: it sees this.
                cast("dict[str, Any]", self.scope)[REQUEST_TARGET_KEY] = target

    return TargetKeepingProtocol


def connection_limit(settings: Settings) -> int:
    """Connections uvicorn holds before it answers a plain-text 503 itself.

    A backstop against connection floods, set as high as the open-file limit allows: below
    it the app's own limit (``localloom.server.limits``) answers busy clients in OpenAI's
    JSON with ``Retry-After``, which clients understand.
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # Windows: sockets have no such limit
        soft = 1024 + _SPARE_FILES
    if soft < 0:  # RLIM_INFINITY
        soft = 1024 + _SPARE_FILES
    return max(2 * max_requests(settings), min(soft - _SPARE_FILES, 1024))


class _DrainingServer(uvicorn.Server):
    """uvicorn, plus: on SIGTERM/SIGINT start the app's drain before uvicorn stops."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self._drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Refuse new requests now; running ones get ``drain_timeout`` seconds."""
        self._drain.begin_threadsafe()
        super().handle_exit(sig, frame)


@contextlib.contextmanager
def _quiet_exit_signals() -> Iterator[None]:
    # uvicorn re-raises the signal it caught once it has shut down, with the handler that
    # was installed before it; a no-op one lets a drained server exit with status 0.
    if not _main_thread():
        yield
        return
    saved = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def serve(settings: Settings, *, allow_remote: bool = False,
          on_ready: Callable[[str], None] | None = None, log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT, then drain and return.

    ``on_ready`` receives the sign-in URL (with the token) once the server accepts requests.
    """
    check_bind(settings.host, allow_remote)
    token = load_or_create_token(settings.config_dir)
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    settings = settings.model_copy(update={"port": port})
    app = create_app(settings, token=token)
    config = uvicorn.Config(
        app, log_config=log_config(token, log_level), log_level=log_level,
        http=http_protocol(settings.header_timeout), proxy_headers=False, server_header=False,
        limit_concurrency=connection_limit(settings),
        timeout_graceful_shutdown=int(settings.drain_timeout) + 5, ws="none", lifespan="on")
    server = _DrainingServer(config, app.state.parts.drain)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and on_ready is not None:
            on_ready(sign_in_url(settings.host, port, token))
        await task

    with _quiet_exit_signals():
        asyncio.run(main())
    if not server.started:
        raise ConfigError("The server did not start; the log above says why.")
