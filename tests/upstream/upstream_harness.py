"""Helpers for the upstream tests: ``[[upstream]]`` tables and a front server using them.
(Not in conftest.py: test modules import these, and another folder's conftest would shadow
the name.)"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server_harness import LiveServer, start_server

# Quick health checks and a breaker that opens after two failures: the fault tests see
# state changes within seconds.
FAST_HEALTH = {"LOCALLOOM_UPSTREAM_HEALTH_INTERVAL": "0.3",
               "LOCALLOOM_UPSTREAM_BREAKER_THRESHOLD": "2",
               "LOCALLOOM_UPSTREAM_BREAKER_COOLDOWN": "1"}


def upstream_table(name: str, url: str, **fields: Any) -> str:
    """One ``[[upstream]]`` table in TOML."""
    lines = ["[[upstream]]", f"name = {name!r}", f"url = {url!r}"]
    for key, value in fields.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k!r} = {v!r}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        elif isinstance(value, Path):
            lines.append(f"{key} = {str(value)!r}")
        else:
            lines.append(f"{key} = {value!r}".replace("True", "true").replace("False", "false"))
    return "\n".join(lines) + "\n"


def token_file(server: LiveServer) -> Path:
    """The file holding a LocalLoom server's token (an upstream's api_key_file)."""
    return server.home / "config" / "server-token"


def start_front(home: Path, model_path: Path, tables: list[str], *,
                env: Mapping[str, str] | None = None) -> LiveServer:
    """A `localloom serve` with a local model 'local-tiny' and ``tables`` as upstreams."""
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "upstreams.toml").write_text("\n".join(tables), encoding="utf-8")
    return start_server(home, model_path, ids=("local-tiny",), env=env)
