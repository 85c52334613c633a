"""What one upstream is: ``--upstream NAME=URL`` or an ``[[upstream]]`` table.

Example ``upstreams.toml`` (in the config dir, or the file ``LOCALLOOM_UPSTREAM_FILE`` names)::

    [[upstream]]
    name = "gpu1"
    url = "http://10.0.0.5:8000/v1"
    api_key_env = "GPU1_KEY"          # or api_key_file = "/run/secrets/gpu1"
    models = { "qwen" = "Qwen/Qwen3-8B" }   # local name -> the upstream's; omit to discover
    weight = 2
    max_concurrency = 64

An API key is never written in the config itself: ``api_key`` is refused with an error that
says where to put it instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from localloom._toml import FileProblem, field_problems, read_toml
from localloom.errors import ConfigError

__all__ = ["UpstreamConfig", "load_upstreams", "parse_cli_upstream"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UpstreamConfig(BaseModel):
    """One OpenAI-compatible server LocalLoom forwards requests to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str = Field(description="Base URL; '/v1' is added when missing.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding "
                                    "the key sent as 'Authorization: Bearer'.")
    api_key_file: Path | None = Field(default=None, description="File holding the key.")
    models: dict[str, str] | None = Field(
        default=None, description="Local model name -> the upstream's name; None: every model "
        "the upstream lists at /v1/models, under its own name.")
    weight: float = Field(default=1.0, gt=0, description="Share of traffic among replicas.")
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=120.0, gt=0,
                                description="Longest wait for the next byte of a "
                                "streamed answer.")
    answer_timeout: float = Field(default=600.0, gt=0, description="Longest wait for a "
                                  "whole (non-streamed) answer, which comes all at once.")
    max_concurrency: int = Field(default=64, ge=1, description="Requests in flight at once; "
                                 "more are refused with 503 + Retry-After.")
    n_ctx: int = Field(default=4096, ge=16, description="Context per request (tasks size "
                       "their chunks by it) unless the upstream reports its own.")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 64)")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        value = value.rstrip("/")
        return value if value.endswith("/v1") else value + "/v1"

    def api_key(self) -> str | None:
        """The key from the environment or the file (None: send no Authorization)."""
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"Upstream '{self.name}': the environment variable "
                                  f"{self.api_key_env} (api_key_env) is not set. Set it, or "
                                  "remove api_key_env if the server needs no key.")
            return key.strip()
        if self.api_key_file is not None:
            try:
                return self.api_key_file.expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"Upstream '{self.name}': cannot read api_key_file "
                                  f"{self.api_key_file} ({exc.strerror}).") from exc
        return None


def _parse(data: dict[str, Any], where: str) -> UpstreamConfig:
    if "api_key" in data:
        raise ConfigError(f"{where}: 'api_key' is not allowed in a config file (it would sit "
                          "there in plain text). Put the key in an environment variable and "
                          "name it with api_key_env, or in a file named by api_key_file.")
    try:
        return UpstreamConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"invalid '{field}': {msg}" for field, msg in field_problems(exc))
        raise ConfigError(f"{where}: {problems}. Fix the entry and start again.") from exc


def parse_cli_upstream(spec: str) -> UpstreamConfig:
    """``NAME=URL`` (as ``--upstream`` takes it) -> a config with every default."""
    name, sep, url = spec.partition("=")
    if not sep or not name or not url:
        raise ConfigError(f"--upstream {spec!r}: expected NAME=URL, e.g. "
                          "--upstream gpu1=http://10.0.0.5:8000/v1")
    return _parse({"name": name.strip(), "url": url.strip()}, f"--upstream {spec!r}")


def load_upstreams(path: Path) -> list[UpstreamConfig]:
    """The ``[[upstream]]`` tables of a TOML file ([] if it does not exist)."""
    if not path.exists():
        return []
    doc = read_toml(path)
    if isinstance(doc, FileProblem):
        raise ConfigError(f"{path} is {doc.detail}. Fix it and start again.")
    tables = doc.get("upstream", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: 'upstream' must be an array of tables ([[upstream]]).")
    unknown = set(doc) - {"upstream"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}; only "
                          "[[upstream]] tables belong here.")
    return [_parse(t, f"{path} [[upstream]] #{i + 1}") for i, t in enumerate(tables)]


def check_unique(configs: list[UpstreamConfig]) -> list[UpstreamConfig]:
    """Refuse two upstreams of one name (their metrics and errors would be confused)."""
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            raise ConfigError(f"Two upstreams are named '{c.name}'. Give each its own name.")
        seen.add(c.name)
    return configs
