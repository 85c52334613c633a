"""`localloom ps | load | stop | unload`: models in a running `localloom serve`, like Ollama's.

These talk to the server's management API (``/api/ps``, ``/api/status``,
``/api/models/{id}/load|unload``) with the token from the config dir. With no server
running they say so and print the command that starts one.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from localloom.cli._errors import fail as _fail
from localloom.config import Settings
from localloom.errors import ConfigError, LocalLoomError

__all__ = ["ServerClient", "register"]

_PORT = typer.Option(None, "--port", help="Port of the server (default: LOCALLOOM_PORT or 8765).")
_TIMEOUT = httpx.Timeout(10.0, read=None)  # a load streams progress for as long as it takes


class ServerClient:
    """The management API of the server at ``settings.host:port``, with its token."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        self.port = port or settings.port
        self.url = f"http://{host}:{self.port}"
        self.settings = settings

    def _token(self) -> str:
        from localloom.server.security import TOKEN_FILE_NAME

        path = self.settings.config_dir / TOKEN_FILE_NAME
        try:
            return path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise self._no_server("it has never run with this config folder") from None
        except OSError as exc:
            raise ConfigError(f"Cannot read the server token {path}: {exc}. Fix its "
                              "permissions, or restart `localloom serve` to write it again.") \
                from exc

    def _no_server(self, why: str) -> LocalLoomError:
        port = "" if self.port == 8765 else f" --port {self.port}"
        return LocalLoomError(
            f"No LocalLoom server is running at {self.url} ({why}). Start one in another "
            f"terminal with `localloom serve{port}`, then run this command again.")

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=_TIMEOUT, trust_env=False,
                            headers={"Authorization": f"Bearer {self._token()}"})

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.status_code == 200:
            return response.json()
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = f"The server answered HTTP {response.status_code}: {response.text[:300]}"
        if response.status_code == 401:
            message = ("The server refused the token in this config folder (was it started "
                       "with another LOCALLOOM_HOME?). Run this command with the same "
                       "LOCALLOOM_HOME as `localloom serve`.")
        # The server's messages already say what to do (its error table maps the types).
        raise LocalLoomError(message)

    def get(self, path: str) -> Any:
        """GET ``path`` (JSON), mapping a refused connection to NoServerError."""
        try:
            with self._client() as client:
                return self._check(client.get(path))
        except httpx.ConnectError as exc:
            raise self._no_server("nothing listens there") from exc

    def post(self, path: str) -> Any:
        """POST ``path`` (JSON answer)."""
        try:
            with self._client() as client:
                return self._check(client.post(path))
        except httpx.ConnectError as exc:
            raise self._no_server("nothing listens there") from exc

    def events(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """POST ``path`` and yield its server-sent ``(event, data)`` pairs."""
        try:
            with self._client() as client, client.stream("POST", path) as response:
                if response.status_code != 200:
                    response.read()
                    self._check(response)
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line[5:].strip())
                        event = "message"
        except httpx.ConnectError as exc:
            raise self._no_server("nothing listens there") from exc


def _path_id(settings: Settings, model_id: str) -> str:
    """The id for a URL path: an alias such as hf.co/ORG/REPO:Q4_K_M has slashes in it."""
    from localloom.catalog import Catalog

    # The server may know models this config folder does not; then it answers for them.
    with contextlib.suppress(LocalLoomError):
        model_id = Catalog(settings).get(model_id).id
    return quote(model_id, safe="")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "in use"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _memory(runtime: dict[str, Any]) -> str:
    size = runtime.get("memory_bytes") or 0
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else (f"{size / 2**20:.0f} MiB"
                                                             if size else "?")


def ps(port: int | None = _PORT,
       as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the models loaded in the running server: memory, age and when they unload."""
    try:
        status = ServerClient(Settings(), port).get("/api/status")
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    loaded, runtime = status["loaded"], status.get("runtime", {})
    if as_json:
        typer.echo(json.dumps({"models": [{**m, "memory_bytes": runtime.get(m["id"], {})
                                           .get("memory_bytes")} for m in loaded]}, indent=2))
        return
    out = Console()
    if not loaded:
        out.print("No model is loaded. `localloom load ID` loads one; a request loads its "
                  "model too.")
        return
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)  # copyable into `localloom stop ID`
    for name in ("memory", "context", "loaded for", "unloads in"):
        table.add_column(name, overflow="fold")
    for m in loaded:
        stats = runtime.get(m["id"], {})
        table.add_row(escape(m["id"]), _memory(stats), str(stats.get("n_ctx", "?")),
                      _duration(m["loaded_for_s"]), _duration(m["expires_in_s"]))
    out.print(table)


def load(model_id: str = typer.Argument(..., metavar="MODEL", help="Model id or alias."),
         port: int | None = _PORT) -> None:
    """Load MODEL in the running server now (downloading it first if needed)."""
    settings = Settings()
    client = ServerClient(settings, port)
    err = Console(stderr=True)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      transient=True, console=err) as bar:
            task = bar.add_task("Loading", total=1.0)
            for event, data in client.events(
                    f"/api/models/{_path_id(settings, model_id)}/load"):
                if event == "progress":
                    bar.update(task, completed=float(data.get("progress", 0)),
                               description=escape(str(data.get("text", ""))))
                elif event == "error":
                    raise LocalLoomError(str(data.get("error", {}).get("message", data)))
                elif event == "done":
                    Console().print(f"Loaded {escape(str(data.get('id', model_id)))} in "
                                    f"{float(data.get('load_time_s', 0)):.1f} s.")
    except LocalLoomError as exc:
        raise _fail(exc) from exc


def stop(model_id: str = typer.Argument(..., metavar="MODEL", help="Model id or alias."),
         port: int | None = _PORT) -> None:
    """Unload MODEL from the running server now (its file stays downloaded)."""
    try:
        settings = Settings()
        result = ServerClient(settings, port).post(
            f"/api/models/{_path_id(settings, model_id)}/unload")
    except LocalLoomError as exc:
        raise _fail(exc) from exc
    Console().print(escape(str(result["message"])))


def register(app: typer.Typer) -> None:
    """Add `ps`, `load`, `stop` and its alias `unload` to the root app."""
    app.command("ps")(ps)
    app.command("load")(load)
    app.command("stop")(stop)
    app.command("unload", help="Same as `stop`: unload MODEL from the running server.")(stop)
