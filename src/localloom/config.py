"""Settings: one object, read from ``LOCALLOOM_*`` environment variables.

Paths come from :mod:`platformdirs` so they are right on Linux, macOS and Windows;
``LOCALLOOM_HOME`` puts everything (config, cache, data) under one folder instead.

Example::

    from localloom import Settings
    settings = Settings(home="/tmp/ll")   # or LOCALLOOM_HOME=/tmp/ll
    print(settings.models_dir)
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "make_private_dir", "make_private_file"]

_APP = "localloom"
_TRUTHY = {"1", "true", "yes", "on"}


class Settings(BaseSettings):
    """Every knob of LocalLoom, each with its one default."""

    model_config = SettingsConfigDict(env_prefix="LOCALLOOM_", extra="ignore")

    home: Path | None = Field(default=None, description="Put config, cache and data under here.")
    offline: bool = Field(default=False, description="Never contact the Hub (HF_HUB_OFFLINE too).")
    models: str | None = Field(
        default=None, description="Extra models.toml files, separated by os.pathsep."
    )
    # Hardware; None means "decide from the machine".
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    flash_attn: bool | None = None
    use_mmap: bool = True
    extra_buffers: Literal["auto", "on", "no-amx", "off"] = Field(
        default="auto",
        description="llama.cpp's CPU extra buffer types (AMX, repacking): auto tries them in a "
        "trial process and falls back when they crash; on, no-amx (repacking kept) or off "
        "force one.",
    )
    simulate_crash: str | None = Field(
        default=None,
        description="Test switch: comma-separated parts (amx, extra-buffers, repack, gpu, "
        "all) that crash the process when a model load uses them, to exercise the fallbacks.",
    )
    adaptive_threads: bool = Field(
        default=True,
        description="Use fewer compute threads while other processes keep cores busy "
        "(measured step by step); off keeps n_threads always.",
    )
    n_ctx: int | None = Field(default=None, description="Context window; None: model's, capped.")
    max_default_ctx: int = Field(default=4096, description="Cap on n_ctx when n_ctx is None.")
    # Scheduler.
    n_parallel: int = Field(default=8, ge=1, le=256, description="Sequences decoded together.")
    max_queue: int = Field(default=64, ge=0, description="Requests allowed to wait.")
    deterministic: bool = Field(
        default=False,
        description="Every request is decoded alone, from an empty cache, without prompt "
        "lookup: the same seeded request gives the same text even under concurrency.",
    )
    prefix_cache: bool = Field(
        default=True,
        description="Reuse the KV cache of a free slot whose tokens start the new prompt.",
    )
    prompt_lookup: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Prompt-lookup speculative decoding for requests that ask for it (the "
        "rewrite and summarize tasks): auto keeps it on for a request only while it measures "
        "faster than plain decoding on this machine; on always; off never.",
    )
    embedding_model: str = Field(
        default="starter",
        description="Model that embeds saved results for search by meaning, and answers "
        "/v1/embeddings requests that name no model (the starter works offline).",
    )
    # Server.
    host: str = "127.0.0.1"
    port: int = 8765
    keep_alive: float = Field(default=300.0, description="Seconds an idle model stays loaded.")
    max_loaded_models: int = Field(default=2, ge=1)
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)
    drain_timeout: float = 10.0
    body_timeout: float = Field(default=30.0, gt=0,
                                description="Seconds a request body may take to arrive.")
    header_timeout: float = Field(default=15.0, gt=0,
                                  description="Seconds a connection may take to send a "
                                  "request's headers before it is closed.")

    # Upstreams: other OpenAI-compatible engines serving models through this one.
    upstream: list[str] = Field(
        default_factory=list,
        description="NAME=URL of each upstream (`serve --upstream`); more settings per "
        "upstream in upstreams.toml's [[upstream]] tables.")
    upstream_file: Path | None = Field(
        default=None, description="The [[upstream]] file; None: upstreams.toml in the "
        "config dir (used when it exists).")
    upstream_health_interval: float = Field(default=5.0, gt=0,
                                            description="Seconds between health checks.")
    upstream_breaker_threshold: int = Field(
        default=3, ge=1, description="Failures in a row that open an upstream's circuit.")
    upstream_breaker_cooldown: float = Field(
        default=5.0, gt=0, description="Seconds an open circuit waits before a trial.")

    @property
    def upstreams_configured(self) -> bool:
        """Whether any upstream is set up (``upstream``, ``upstream_file`` or an
        upstreams.toml in the config dir): callers import :mod:`localloom.upstream` only then."""
        return bool(self.upstream) or self.upstream_file is not None \
            or (self.config_dir / "upstreams.toml").exists()

    def _dir(self, kind: str) -> Path:
        if self.home is not None:
            return Path(self.home) / kind
        if kind == "config":
            return Path(platformdirs.user_config_dir(_APP, appauthor=False))
        if kind == "cache":
            return Path(platformdirs.user_cache_dir(_APP, appauthor=False))
        return Path(platformdirs.user_data_dir(_APP, appauthor=False))

    @property
    def config_dir(self) -> Path:
        """Holds models.toml, tasks.toml and the server token."""
        return self._dir("config")

    @property
    def cache_dir(self) -> Path:
        """Root of the model store."""
        return self._dir("cache")

    @property
    def data_dir(self) -> Path:
        """Holds the saved-results database."""
        return self._dir("data")

    @property
    def models_dir(self) -> Path:
        """Verified model files live under here."""
        return self.cache_dir / "models"

    @property
    def user_models_files(self) -> list[Path]:
        """models.toml in the config dir, then any LOCALLOOM_MODELS paths."""
        files = [self.config_dir / "models.toml"]
        if self.models:
            files.extend(Path(p) for p in self.models.split(os.pathsep) if p)
        return files

    @property
    def is_offline(self) -> bool:
        """True when LOCALLOOM_OFFLINE or HF_HUB_OFFLINE asks for no network."""
        return self.offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUTHY


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) readable by this user only (0700 on POSIX).

    Saved results, the server token and downloaded files are the user's: under a umask of
    022 they were readable by every local account. On Windows the per-user folders that
    platformdirs returns already carry an owner-only ACL, so nothing changes there.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        # a folder we do not own (a shared LOCALLOOM_HOME): its mode is left alone
        with contextlib.suppress(OSError):
            if path.stat().st_uid == os.getuid():
                os.chmod(path, 0o700)
    return path


def make_private_file(path: Path) -> None:
    """Create ``path`` empty if missing, and make it 0600 on POSIX (SQLite gives its -wal
    and -shm files the mode of the database file)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    if os.name == "posix":
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
