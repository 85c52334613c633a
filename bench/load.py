"""Concurrent HTTP clients against an OpenAI-compatible ``/v1/completions`` endpoint.

Every request asks for the same number of tokens at temperature 0 with the end-of-sequence
token banned (``logit_bias`` -100, the OpenAI way to say "never"), so servers are compared
on equal work; the completion tokens each server reports are what the figures count.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.servers import ServerHandle

__all__ = ["LoadResult", "percentile", "run_load", "warm_up"]


@dataclass(frozen=True)
class LoadResult:
    """`clients` concurrent clients, each sending requests back to back."""

    clients: int
    requests: int
    errors: int
    completion_tokens: int
    min_tokens: int
    wall_s: float
    tokens_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    first_error: str = ""
    streamed: bool = False
    ttft_p50_s: float = float("nan")  # streamed only: time to the first chunk with text
    ttft_p95_s: float = float("nan")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), `q` in 0..100."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _body(handle: ServerHandle, prompt: str, max_tokens: int, eos_id: int,
          stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": handle.model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "logit_bias": {str(eos_id): -100},
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def _one_streamed(client: httpx.AsyncClient, handle: ServerHandle, prompt: str,
                        max_tokens: int, eos_id: int) -> tuple[float, int, float]:
    """(latency, completion tokens, time to first text) of one streamed request. Tokens
    come from the final usage chunk; a server that sends none is counted by text chunks."""
    t0 = time.perf_counter()
    ttft, chunks, usage = float("nan"), 0, None
    async with client.stream("POST", handle.base_url + "/v1/completions",
                             headers=handle.headers,
                             json=_body(handle, prompt, max_tokens, eos_id, True)) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            event = json.loads(line[5:])
            if event.get("usage"):
                usage = event["usage"]
            if any(c.get("text") for c in event.get("choices") or []):
                chunks += 1
                if ttft != ttft:  # the first text
                    ttft = time.perf_counter() - t0
    n = int(usage.get("completion_tokens", 0)) if usage else chunks
    return time.perf_counter() - t0, n, ttft


async def _one(client: httpx.AsyncClient, handle: ServerHandle, prompt: str, max_tokens: int,
               eos_id: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = await client.post(handle.base_url + "/v1/completions", headers=handle.headers,
                          json=_body(handle, prompt, max_tokens, eos_id))
    elapsed = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
    usage = r.json().get("usage") or {}
    return elapsed, int(usage.get("completion_tokens", 0))


async def _run(handle: ServerHandle, prompts: list[str], clients: int, per_client: int,
               max_tokens: int, eos_id: int, timeout: float, stream: bool) -> LoadResult:
    latencies: list[float] = []
    ttfts: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def worker(c: int) -> None:
            for r in range(per_client):
                prompt = prompts[(c * per_client + r) % len(prompts)]
                try:
                    if stream:
                        lat, n, ttft = await _one_streamed(client, handle, prompt, max_tokens,
                                                           eos_id)
                        if not math.isnan(ttft):
                            ttfts.append(ttft)
                    else:
                        lat, n = await _one(client, handle, prompt, max_tokens, eos_id)
                except (httpx.HTTPError, RuntimeError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append(lat)
                tokens.append(n)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(clients)))
        wall = time.perf_counter() - t0
    total = sum(tokens)
    return LoadResult(
        clients=clients, requests=len(latencies), errors=len(errors), completion_tokens=total,
        min_tokens=min(tokens) if tokens else 0, wall_s=wall,
        tokens_per_s=total / wall if wall > 0 else 0.0,
        latency_p50_s=percentile(latencies, 50), latency_p95_s=percentile(latencies, 95),
        first_error=errors[0] if errors else "", streamed=stream,
        ttft_p50_s=percentile(ttfts, 50), ttft_p95_s=percentile(ttfts, 95),
    )


def run_load(handle: ServerHandle, prompts: list[str], *, clients: int, per_client: int,
             max_tokens: int, eos_id: int, timeout: float = 900,
             stream: bool = False) -> LoadResult:
    """Run `clients` concurrent clients with `per_client` requests each; aggregate figures
    (streamed requests add time-to-first-token percentiles)."""
    return asyncio.run(_run(handle, prompts, clients, per_client, max_tokens, eos_id, timeout,
                            stream))


def warm_up(handle: ServerHandle, eos_id: int, timeout: float = 600) -> None:
    """One short request: loads the model where a server loads on demand, warms caches."""
    with httpx.Client(timeout=timeout) as client:
        r = client.post(handle.base_url + "/v1/completions", headers=handle.headers,
                        json=_body(handle, "Warm up: the first words are", 4, eos_id))
        if r.status_code != 200:
            raise RuntimeError(f"warm-up request failed: HTTP {r.status_code}: {r.text[:500]}")
