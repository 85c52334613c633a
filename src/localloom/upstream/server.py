"""One upstream server: its HTTP client, breaker, in-flight count and metrics.

Example::

    up = UpstreamServer(UpstreamConfig(name="a", url="http://127.0.0.1:8080"))
    up.discover()          # {"tiny": "tiny"} from GET /v1/models
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from localloom.errors import ServerBusyError, UpstreamError, UpstreamTimeoutError
from localloom.upstream.breaker import CircuitBreaker
from localloom.upstream.config import UpstreamConfig

__all__ = ["UpstreamServer", "UpstreamStats"]


@dataclass
class UpstreamStats:
    """Counters of one upstream, as /metrics shows them."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_sum: float = 0.0  # seconds to the first byte, over successful starts
    latency_count: int = 0
    failovers: int = 0  # requests this upstream failed that another replica then took


class UpstreamServer:
    """An OpenAI-compatible server; thread-safe (requests run on worker threads)."""

    def __init__(self, config: UpstreamConfig, *, breaker: CircuitBreaker | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.name = config.name
        key = config.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limits = httpx.Limits(max_connections=config.max_concurrency + 4,
                              max_keepalive_connections=config.max_concurrency)
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout)
        self.client = httpx.Client(base_url=config.url, headers=headers, timeout=timeout,
                                   limits=limits, transport=transport)
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.stats = UpstreamStats()
        self.n_ctx: dict[str, int] = {}  # upstream model name -> context it reported
        self._lock = threading.Lock()
        self._outstanding = 0

    @property
    def outstanding(self) -> int:
        """Requests in flight now."""
        return self._outstanding

    def enter(self) -> None:
        """Count a request in; refuse past max_concurrency (the same 503 as local overload)."""
        with self._lock:
            if self._outstanding >= self.config.max_concurrency:
                raise ServerBusyError(
                    f"Upstream '{self.name}' has {self.config.max_concurrency} requests in "
                    "flight (its max_concurrency); retry shortly.", retry_after=1.0)
            self._outstanding += 1
            self.stats.requests += 1

    def leave(self) -> None:
        """Count a request out."""
        with self._lock:
            self._outstanding -= 1

    def count_error(self, kind: str) -> None:
        """One failed request or check, by kind (connect, timeout, status_5xx, ...)."""
        with self._lock:
            self.stats.errors[kind] += 1

    def observe(self, *, first_byte_s: float | None = None, prompt: int = 0,
                completion: int = 0) -> None:
        """Latency to the first byte and tokens of a request."""
        with self._lock:
            if first_byte_s is not None:
                self.stats.latency_sum += first_byte_s
                self.stats.latency_count += 1
            self.stats.prompt_tokens += prompt
            self.stats.completion_tokens += completion

    def discover(self) -> dict[str, str]:
        """The models this upstream serves: the configured mapping, or ``GET /v1/models``
        under the upstream's own names. Records each model's context where it is reported
        (vLLM's ``max_model_len``, llama-server's ``meta.n_ctx_train``)."""
        if self.config.models is not None:
            return dict(self.config.models)
        body = self.get_json("/models")
        out: dict[str, str] = {}
        for card in body.get("data", []) if isinstance(body, dict) else []:
            if isinstance(card, dict) and isinstance(card.get("id"), str):
                out[card["id"]] = card["id"]
                ctx = card.get("max_model_len") or (card.get("meta") or {}).get("n_ctx_train")
                if isinstance(ctx, int) and ctx > 0:
                    self.n_ctx[card["id"]] = ctx
        return out

    def get_json(self, path: str) -> Any:
        """GET a JSON document; errors become :class:`UpstreamError`."""
        try:
            r = self.client.get(path, timeout=min(self.config.read_timeout, 10.0))
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError(f"Upstream '{self.name}' ({self.config.url}) did not "
                                       f"answer GET {path} in time.") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Upstream '{self.name}' ({self.config.url}) is unreachable "
                                f"({exc}). Check that it runs and the URL is right.") from exc
        if r.status_code != 200:
            raise UpstreamError(f"Upstream '{self.name}' answered GET {path} with HTTP "
                                f"{r.status_code}: {r.text[:200]}")
        try:
            return r.json()
        except ValueError as exc:
            raise UpstreamError(f"Upstream '{self.name}' answered GET {path} with non-JSON "
                                "text; is the URL an OpenAI-compatible API?") from exc

    def check_health(self) -> bool:
        """``GET /v1/models`` (every OpenAI-compatible server has it); tells the breaker."""
        try:
            self.get_json("/models")
        except UpstreamError:
            self.count_error("health")
            self.breaker.failure()
            return False
        self.breaker.success()
        return True

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
