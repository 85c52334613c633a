"""``Upstreams``: every configured upstream, the models they serve, and health checks.

The engine asks ``pool(model)`` for each request: a model an upstream serves goes there
(it shadows a catalog model of the same name: configuring an upstream says so), anything
else stays local.

Example::

    ups = Upstreams([UpstreamConfig(name="a", url="http://127.0.0.1:8080")])
    ups.models()        # {"tiny": ["a"]}
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from localloom.config import Settings
from localloom.engine.events import Event
from localloom.engine.runner import LoadedModelInfo
from localloom.errors import GenerationInterrupted, InvalidRequestError, UpstreamError
from localloom.upstream.breaker import CircuitBreaker
from localloom.upstream.call import CallKind, RemoteCall
from localloom.upstream.config import (
    UpstreamConfig,
    check_unique,
    load_upstreams,
    parse_cli_upstream,
)
from localloom.upstream.pool import Pool, Replica
from localloom.upstream.server import UpstreamServer

__all__ = ["Upstreams"]

logger = logging.getLogger("localloom.upstream")

# Request fields LocalLoom itself acts on, not sent upstream: the model is the replica's
# name, the call always streams with usage (the assemblers answer as the client asked), and
# keep_alive is about keeping a local model loaded (a remote one never is); deterministic
# gets here only as false (true is refused: see _body).
_LOCAL_ONLY = frozenset({"model", "stream", "stream_options", "keep_alive", "deterministic"})
_BYTES_PER_TOKEN = 3  # a safe over-count (English runs ~4 bytes a token) when sizing chunks


class Upstreams:
    """The upstreams of one engine; thread-safe. ``close()`` stops the health checks."""

    def __init__(self, configs: Sequence[UpstreamConfig], *, health_interval: float = 5.0,
                 breaker_threshold: int = 3, breaker_cooldown: float = 5.0) -> None:
        check_unique(list(configs))
        self.servers = [UpstreamServer(c, breaker=CircuitBreaker(
            threshold=breaker_threshold, cooldown=breaker_cooldown)) for c in configs]
        self.created = time.time()
        self._lock = threading.Lock()
        self._served: dict[str, dict[str, str]] = {}  # upstream name -> local -> remote
        self._pools: dict[str, Pool] = {}
        self._calls: set[RemoteCall] = set()  # in flight, for interrupt()
        self._stop = threading.Event()
        for server in self.servers:
            self._discover(server)
        self._health = threading.Thread(target=self._check_forever, args=(health_interval,),
                                        name="localloom-upstream-health", daemon=True)
        self._health.start()

    @classmethod
    def from_settings(cls, settings: Settings,
                      extra: Sequence[UpstreamConfig | str] = ()) -> Upstreams | None:
        """The upstreams of ``settings`` (``upstream`` NAME=URL entries and the
        ``[[upstream]]`` file) plus ``extra``; None when there are none."""
        configs = [parse_cli_upstream(s) for s in settings.upstream]
        configs += load_upstreams(settings.upstream_file or
                                  settings.config_dir / "upstreams.toml")
        configs += [parse_cli_upstream(e) if isinstance(e, str) else e for e in extra]
        if not configs:
            return None
        return cls(configs, health_interval=settings.upstream_health_interval,
                   breaker_threshold=settings.upstream_breaker_threshold,
                   breaker_cooldown=settings.upstream_breaker_cooldown)

    # -- models ---------------------------------------------------------------------------

    def _discover(self, server: UpstreamServer) -> None:
        try:
            served = server.discover()
        except UpstreamError as exc:
            server.breaker.failure()
            logger.warning("Upstream %s: cannot list its models yet (%s); retrying with the "
                           "health checks.", server.name, exc)
            return
        with self._lock:
            self._served[server.name] = served
            self._rebuild()
        logger.info("Upstream %s serves %s", server.name, ", ".join(sorted(served)) or "nothing")

    def _rebuild(self) -> None:
        pools: dict[str, Pool] = {}
        for server in self.servers:
            for local, remote in self._served.get(server.name, {}).items():
                pools.setdefault(local, Pool(local, [])).replicas.append(Replica(server, remote))
        self._pools = pools

    def pool(self, model: str | None) -> Pool | None:
        """The pool serving ``model``, or None (a local model)."""
        if model is None:
            return None
        with self._lock:
            return self._pools.get(model)

    def models(self) -> dict[str, list[str]]:
        """Model name -> the upstreams serving it."""
        with self._lock:
            return {m: p.names for m, p in sorted(self._pools.items())}

    def unlisted(self) -> list[UpstreamServer]:
        """The upstreams whose models are not known yet (they did not answer so far)."""
        with self._lock:
            return [s for s in self.servers if s.name not in self._served]

    def info(self, pool: Pool) -> LoadedModelInfo:
        """What ``engine.model_info`` says of a remote model: its context is the smallest
        replica's, its parallelism what the replicas take together (a task fans out that
        far, at most 8 calls per replica)."""
        now = time.time()
        parallel = min(pool.capacity, 8 * len(pool.replicas))
        return LoadedModelInfo(
            id=pool.model, path=Path(pool.replicas[0].server.config.url), n_ctx=pool.n_ctx,
            n_parallel=parallel, size_bytes=0, prompt_style="chat", loaded_at=self.created,
            last_used=now, backend="upstream:" + ",".join(pool.names))

    @staticmethod
    def count_tokens(text: str) -> int:
        """An over-estimate of the tokens of ``text`` (upstreams need not offer a
        tokenizer): tasks size their chunks by it, so too many is safe, too few is not."""
        return max(1, math.ceil(len(text.encode("utf-8")) / _BYTES_PER_TOKEN))

    # -- requests -------------------------------------------------------------------------

    def submit(self, pool: Pool, kind: CallKind, params: Mapping[str, Any], n: int,
               sink: Callable[[Event], None]) -> RemoteCall:
        """Start one request (chat: ``params`` holds ``messages``; completion: ``prompt``)."""
        call = RemoteCall(pool, kind, _body(params), n, sink, on_end=self._ended)
        with self._lock:
            self._calls.add(call)
        call.start()
        return call

    def _ended(self, call: RemoteCall) -> None:
        with self._lock:
            self._calls.discard(call)

    def interrupt(self, model: str | None = None) -> None:
        """Stop the requests in flight (to ``model``, or all): their upstream streams close
        and their callers get :class:`GenerationInterrupted`, as for a local model."""
        with self._lock:
            calls = [c for c in self._calls if model is None or c.pool.model == model]
        for call in calls:
            call.cancel(GenerationInterrupted("The generation was interrupted "
                                              "(engine.interrupt)."))

    # -- health ---------------------------------------------------------------------------

    def _check_forever(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.check_now()

    def check_now(self) -> None:
        """Check every upstream once (and list the models of those not yet listed)."""
        for server in self.servers:
            if self._stop.is_set():
                return
            with self._lock:
                known = server.name in self._served
            if not known:
                self._discover(server)
            else:
                server.check_health()

    def metrics_lines(self) -> list[str]:
        """Prometheus lines per upstream: requests, errors, latency, tokens, state."""
        out = [
            "# HELP localloom_upstream_requests_total Requests sent to each upstream.",
            "# TYPE localloom_upstream_requests_total counter"]
        rows: list[tuple[str, str, float]] = []
        for s in self.servers:
            st = s.stats
            out.append(f'localloom_upstream_requests_total{{upstream="{s.name}"}} {st.requests}')
            rows += [("errors_total", f'upstream="{s.name}",kind="{k}"', v)
                     for k, v in sorted(st.errors.items())]
            rows += [("tokens_total", f'upstream="{s.name}",direction="in"', st.prompt_tokens),
                     ("tokens_total", f'upstream="{s.name}",direction="out"',
                      st.completion_tokens),
                     ("first_byte_seconds_sum", f'upstream="{s.name}"', st.latency_sum),
                     ("first_byte_seconds_count", f'upstream="{s.name}"', st.latency_count),
                     ("failovers_total", f'upstream="{s.name}"', st.failovers),
                     ("in_flight", f'upstream="{s.name}"', s.outstanding),
                     ("circuit_open", f'upstream="{s.name}"',
                      0 if s.breaker.state.value == "closed" else 1)]
        out += [f"localloom_upstream_{name}{{{labels}}} {value:g}" for name, labels, value in rows]
        return out

    def close(self) -> None:
        """Stop the health checks and close the connections."""
        self._stop.set()
        for server in self.servers:
            server.close()


def _body(params: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream's request body: every field the client set, as set (tools, logprobs,
    response_format, seed, penalties, ...: the upstream refuses what it does not support,
    and its message reaches the client), except :data:`_LOCAL_ONLY`."""
    if params.get("deterministic"):
        raise InvalidRequestError(
            "'deterministic' applies to local models only (an upstream schedules its own "
            "batches). Leave it out for a remote model.", param="deterministic")
    body = {k: _plain(v) for k, v in params.items() if k not in _LOCAL_ONLY}
    # A streaming caller gets the upstream's stream (with usage at its end); a whole answer
    # is asked for whole: one JSON body instead of a parsed event per token, which at 32
    # clients made this server's CPU the limit (bench/upstream.py on the H200: 0.78x).
    body["stream"] = bool(params.get("stream"))
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    return body


def _plain(value: Any) -> Any:
    """Request values as JSON (messages may be pydantic models)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True, by_alias=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
