"""Upstreams: LocalLoom in front of other OpenAI-compatible engines (vLLM, llama-server,
Ollama's /v1, another LocalLoom).

A model an upstream serves is used like a local one: the engine sends its requests to a
:class:`Pool` of replicas (least outstanding requests, weighted; a circuit breaker per
upstream; failover before the first streamed byte) and turns the answers into the same
chunks and responses the local runner gives, so every API, task and the history work the
same.

Example::

    from localloom import Engine
    with Engine(upstream=["gpu=http://10.0.0.5:8000/v1"]) as engine:
        r = engine.chat.completions.create(model="Qwen/Qwen3-8B", messages=[...])
"""

from __future__ import annotations

from localloom.upstream.breaker import BreakerState, CircuitBreaker
from localloom.upstream.call import CallState, RemoteCall
from localloom.upstream.config import UpstreamConfig, load_upstreams, parse_cli_upstream
from localloom.upstream.pool import Pool, Replica
from localloom.upstream.registry import Upstreams
from localloom.upstream.server import UpstreamServer

__all__ = [
    "BreakerState",
    "CallState",
    "CircuitBreaker",
    "Pool",
    "RemoteCall",
    "Replica",
    "UpstreamConfig",
    "UpstreamServer",
    "Upstreams",
    "load_upstreams",
    "parse_cli_upstream",
]
