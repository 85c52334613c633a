"""Wire models of the management group (``/api/*``, ``/health``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from localloom.catalog.entry import Capability

__all__ = [
    "ActionResult",
    "FitInfo",
    "Health",
    "ModelInfo",
    "ModelsResponse",
    "PsEntry",
    "PsResponse",
    "StatusResponse",
]


class FitInfo(BaseModel):
    """Whether a model fits this machine (see :func:`localloom.catalog.hardware.fit`)."""

    status: Literal["fits", "tight", "does_not_fit"]
    label: str
    reason: str
    device: Literal["gpu", "cpu"]


class ModelInfo(BaseModel):
    """One catalog entry with its size, RAM needs, fit and cache state.

    ``context_length`` is what the model was trained for; ``runtime_context`` is the context
    each request gets on this server: read from the loaded model
    (``runtime_context_measured``), else the one the settings will give it
    (``LOCALLOOM_N_CTX``, or the trained context capped at ``LOCALLOOM_MAX_DEFAULT_CTX``).
    """

    id: str
    display_name: str
    description: str
    download_size: int
    ram_min_gb: float
    ram_max_gb: float
    ram: str
    context_length: int
    runtime_context: int
    runtime_context_measured: bool
    speed: str
    quality: str
    prompt_style: Literal["chat", "completion"]
    capabilities: list[Capability]
    capability_label: str  # "tools · reasoning": the flags worth showing, "" for a plain chat model
    source: str
    tags: list[str]
    aliases: list[str]
    cached: bool
    loaded: bool
    fit: FitInfo
    remote: str | None = None  # served by these upstreams (comma-separated names)


class ModelsResponse(BaseModel):
    """``GET /api/models``."""

    models: list[ModelInfo]
    problems: list[str]


class PsEntry(BaseModel):
    """One loaded model in ``GET /api/ps``: Ollama's fields (``name`` ... ``size_vram``),
    then LocalLoom's (``id`` ... ``expires_in_s``)."""

    name: str = ""
    model: str = ""
    size: int = 0
    digest: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    expires_at: str = ""
    size_vram: int = 0
    context_length: int = 0
    id: str
    loaded_at: float
    loaded_for_s: float
    idle_for_s: float
    active_requests: int
    expires_in_s: float | None


class PsResponse(BaseModel):
    """``GET /api/ps``: what is loaded, for how long, and when it unloads."""

    models: list[PsEntry]
    keep_alive_s: float
    max_loaded_models: int


class ActionResult(BaseModel):
    """Outcome of unload / delete."""

    id: str
    unloaded: bool = False
    deleted: bool = False
    message: str


class StatusResponse(BaseModel):
    """``GET /api/status``."""

    version: str
    uptime_s: float
    draining: bool
    settings: dict[str, Any]
    loaded: list[PsEntry]
    runtime: dict[str, dict[str, Any]]
    hardware: dict[str, Any]


class Health(BaseModel):
    """``GET /health`` (public): liveness only, nothing about the user's models."""

    status: Literal["ok", "draining"]
