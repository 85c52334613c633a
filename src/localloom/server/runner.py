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
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import uvicorn

from localloom.config import Settings
from localloom.errors import ConfigError
from localloom.server.app import create_app
from localloom.server.drain import Drain
from localloom.server.security import RedactTokenFilter, is_loopback_host, load_or_create_token

__all__ = ["bind_socket", "check_bind", "log_config", "serve", "sign_in_url"]


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
        return socket.create_server((bare, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Another program may use "
            "the port: pick another with --port (0 picks a free one).") from exc


def sign_in_url(host: str, port: int, token: str) -> str:
    """The URL that signs a browser in (sets the cookie) and opens the UI."""
    bare = host.strip("[]")
    if bare in ("0.0.0.0", ""):
        bare = "127.0.0.1"
    elif bare == "::":
        bare = "::1"
    shown = f"[{bare}]" if ":" in bare else bare
    return f"http://{shown}:{port}/?token={token}"


def log_config(token: str, level: str = "info") -> dict[str, Any]:
    """uvicorn's logging, on stderr, with every line passed through the token filter."""
    redact = {"()": RedactTokenFilter, "secrets": [token]}
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "filters": ["redact"]}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": redact},
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
    # Backstop against floods: beyond this many connections uvicorn answers 503 itself.
    limit = max(64, 4 * (settings.n_parallel + settings.max_queue))
    config = uvicorn.Config(
        app, log_config=log_config(token, log_level), log_level=log_level,
        proxy_headers=False, server_header=False, limit_concurrency=limit,
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
