"""Prometheus metrics, written in the text exposition format by hand (no dependency).

Example::

    metrics = Metrics()
    metrics.observe_tokens("tiny", prompt=12, completion=40)
    text = metrics.render(Gauges(queue_depth=0, running=1, loaded_models=["tiny"]))
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE", "Gauges", "Histogram", "Metrics", "MetricsMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = [*labels, *([extra] if extra else [])]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _fmt_value(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Histogram:
    """Cumulative-bucket histogram per label set."""

    name: str
    help: str
    buckets: Sequence[float]
    _counts: dict[Labels, list[int]] = field(default_factory=dict)
    _sums: dict[Labels, float] = field(default_factory=lambda: defaultdict(float))

    def observe(self, value: float, labels: Labels = ()) -> None:
        """Add one observation."""
        counts = self._counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sums[labels] += value

    def render(self) -> list[str]:
        """Exposition lines (HELP, TYPE, buckets, sum, count)."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, counts in sorted(self._counts.items()):
            running = 0
            for bound, count in zip([*self.buckets, float("inf")], counts, strict=True):
                running += count
                le = ("le", _fmt_value(bound))
                lines.append(f"{self.name}_bucket{_fmt_labels(labels, le)} {running}")
            lines.append(f"{self.name}_sum{_fmt_labels(labels)} {_fmt_value(self._sums[labels])}")
            lines.append(f"{self.name}_count{_fmt_labels(labels)} {running}")
        return lines


@dataclass(frozen=True)
class Gauges:
    """Values read from the engine at scrape time."""

    queue_depth: int = 0
    running: int = 0
    loaded_models: Sequence[str] = ()
    in_flight: int = 0


class Metrics:
    """Counters and histograms of one server. Thread-safe (the engine reports from threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[Labels, int] = defaultdict(int)
        self._tokens: dict[Labels, int] = defaultdict(int)
        self._latency = Histogram("localloom_request_duration_seconds",
                                  "Time from request start to the last byte sent.",
                                  _LATENCY_BUCKETS)
        self._ttft = Histogram("localloom_time_to_first_token_seconds",
                               "Time from request start to the first generated token.",
                               _TTFT_BUCKETS)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request."""
        labels: Labels = (("route", route), ("method", method), ("status", str(status)))
        with self._lock:
            self._requests[labels] += 1
            self._latency.observe(seconds, (("route", route),))

    def observe_tokens(self, model: str, *, prompt: int, completion: int) -> None:
        """Count tokens read and generated for one request."""
        with self._lock:
            self._tokens[(("direction", "in"), ("model", model))] += prompt
            self._tokens[(("direction", "out"), ("model", model))] += completion

    def observe_ttft(self, model: str, seconds: float) -> None:
        """Record a time to first token."""
        with self._lock:
            self._ttft.observe(seconds, (("model", model),))

    def render(self, gauges: Gauges) -> str:
        """The whole exposition as text."""
        with self._lock:
            lines = ["# HELP localloom_http_requests_total HTTP requests by route and status.",
                     "# TYPE localloom_http_requests_total counter"]
            lines += [f"localloom_http_requests_total{_fmt_labels(k)} {v}"
                      for k, v in sorted(self._requests.items())]
            lines += ["# HELP localloom_tokens_total Tokens read (in) and generated (out).",
                      "# TYPE localloom_tokens_total counter"]
            lines += [f"localloom_tokens_total{_fmt_labels(k)} {v}"
                      for k, v in sorted(self._tokens.items())]
            lines += self._latency.render() + self._ttft.render()
        lines += _gauge("localloom_queue_depth", "Requests waiting for a decode slot.",
                        gauges.queue_depth)
        lines += _gauge("localloom_requests_running", "Sequences being generated.",
                        gauges.running)
        lines += _gauge("localloom_http_requests_in_flight", "HTTP requests being served.",
                        gauges.in_flight)
        lines += _gauge("localloom_loaded_models", "Models loaded in memory.",
                        len(gauges.loaded_models))
        lines += ["# HELP localloom_model_loaded 1 for each loaded model.",
                  "# TYPE localloom_model_loaded gauge"]
        lines += [f"localloom_model_loaded{_fmt_labels((('model', m),))} 1"
                  for m in gauges.loaded_models]
        return "\n".join(lines) + "\n"


def _gauge(name: str, help_: str, value: float) -> list[str]:
    return [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {_fmt_value(value)}"]


class MetricsMiddleware:
    """Counts every response (refusals included) by route template, method and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics,
                 routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # to name the route of requests refused before routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and record it when the last byte is sent (or it fails)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.observe_request(self._route_of(scope), scope["method"], status,
                                         time.perf_counter() - start)

    def _route_of(self, scope: Scope) -> str:
        # The route template, not the raw path: label values stay few.
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"
