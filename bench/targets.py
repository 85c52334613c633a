"""The "Done when" figures of issue 6, checked against a run's results."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Target", "evaluate_targets"]

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One target on one model: the ratio measured, the ratio needed, and by how much it missed."""

    key: str
    label: str
    model: str
    ratio: float
    need: float
    at_least: bool  # True: ratio >= need; False: ratio <= need
    detail: str  # the two figures the ratio comes from
    context: str  # measured facts that bear on why

    @property
    def met(self) -> bool:
        """Whether the measured ratio reaches the target."""
        return self.ratio >= self.need if self.at_least else self.ratio <= self.need

    @property
    def measured(self) -> str:
        """The ratio and its two figures."""
        return f"{self.ratio:.2f}× ({self.detail})"

    @property
    def needed(self) -> str:
        """The target as written in the issue."""
        return f"{'≥' if self.at_least else '≤'} {self.need:.2f}×"

    @property
    def short_by(self) -> str:
        """How far from the target, in words a reader can act on."""
        if self.at_least:
            gap = (self.need - self.ratio) / self.need * 100
            more = (self.need / self.ratio - 1) * 100 if self.ratio > 0 else math.inf
            return f"{gap:.1f}% (needs {more:.1f}% more throughput)"
        return (f"a factor of {self.ratio / self.need:.2f} (reuse TTFT must shrink that much "
                "more)")


def _rate(run: dict[str, Any] | None) -> float | None:
    return run.get("tokens_per_s") if run else None


def _level(http: dict[str, Any], kind: str, clients: int) -> dict[str, Any] | None:
    runs = http["servers"].get(kind) or []
    for run in runs:
        if run and run.get("clients") == clients:
            return dict(run)
    return None


def _ok(*xs: float | None) -> bool:
    return all(x is not None and x > 0 and not math.isnan(x) for x in xs)


def _roof_pct(r: Results, m: dict[str, Any], rate: float) -> str:
    bw = (r.get("bandwidth") or {}).get("gb_per_s")
    if not bw:
        return "?"
    return f"{100 * rate / (bw * 1e9 / m['file']['bytes_per_token']):.0f}%"


def _single(r: Results, key: str, m: dict[str, Any], need: float, prefix: str,
            label: str) -> list[Target]:
    lb, ll = m.get("llama_bench") or {}, m.get("engine_single") or {}
    a, b = ll.get("decode_ts"), lb.get("tg_ts")
    if not _ok(a, b):
        return []
    assert a is not None and b is not None
    ctx = (f"Decode: llama-bench {b:.1f} ± {lb.get('tg_sd', 0):.1f} tok/s "
           f"({_roof_pct(r, m, b)} of the memory roofline), LocalLoom {a:.1f} ± "
           f"{ll.get('decode_sd', 0):.1f} tok/s ({_roof_pct(r, m, a)}); the engine's own "
           f"runtime_stats() reported {ll.get('reported_decode_ts', float('nan')):.1f} tok/s.")
    return [Target(f"{prefix}single-decode.{key}", label, key, a / b, need, True,
                   f"{a:.1f} vs {b:.1f} tok/s", ctx)]


def _http(key: str, m: dict[str, Any]) -> list[Target]:
    http = m.get("http")
    if not http:
        return []
    ll, ls, lp = (_level(http, k, 8) for k in ("localloom", "llama-server", "llama-cpp-python"))
    out = []
    a = _rate(ll)
    streams = {p["streams"]: p for p in m.get("engine_streams") or []}
    bb = {p["pl"]: p for p in m.get("batched_bench") or []}
    ctx = ""
    if ll:
        ctx = (f"LocalLoom latency p50 {ll['latency_p50_s']:.2f} s / p95 "
               f"{ll['latency_p95_s']:.2f} s over {ll['requests']} requests.")
    if 8 in streams and 8 in bb:
        ctx += (f" In-process (no HTTP) the engine decodes {streams[8]['decode_ts']:.1f} tok/s "
                f"with 8 streams vs llama-batched-bench's {bb[8]['speed_tg']:.1f}.")
    for peer, run, need, label in (
        ("llama-server", ls, 1.0, "8 HTTP clients vs llama-server -np 8"),
        ("llama-cpp-python", lp, 1.5, "8 HTTP clients vs llama-cpp-python's server"),
    ):
        b = _rate(run)
        if _ok(a, b):
            assert a is not None and b is not None
            out.append(Target(f"http8-vs-{peer}.{key}", label, key, a / b, need, True,
                              f"{a:.1f} vs {b:.1f} tok/s", ctx))
    return out


def _prefix(key: str, m: dict[str, Any]) -> list[Target]:
    p = m.get("prefix_reuse")
    if not p or not _ok(p["reuse_ttft_s"], p["cold_ttft_s"]):
        return []
    ctx = f"Cold TTFT measured as: {p['cold_method']}; {p['doc_tokens']}-token prompt."
    return [Target(f"prefix-reuse.{key}", "Prefix reuse TTFT vs cold", key,
                   p["reuse_ttft_s"] / p["cold_ttft_s"], 0.25, False,
                   f"{p['reuse_ttft_s'] * 1000:.0f} vs {p['cold_ttft_s'] * 1000:.0f} ms", ctx)]


def _cuda_streams(key: str, m: dict[str, Any]) -> list[Target]:
    bb = {p["pl"]: p for p in m.get("batched_bench") or []}
    out = []
    for p in m.get("engine_streams") or []:
        n = p["streams"]
        if n not in (8, 32) or n not in bb or not _ok(p["decode_ts"], bb[n]["speed_tg"]):
            continue
        a, b = p["decode_ts"], bb[n]["speed_tg"]
        ctx = (f"End to end (prefill and ramp included) LocalLoom made {p['end_to_end_ts']:.0f} "
               f"tok/s with {n} streams.")
        out.append(Target(f"cuda-streams-{n}.{key}", f"H100: {n} streams vs "
                          "llama-batched-bench aggregate", key, a / b, 0.9, True,
                          f"{a:.0f} vs {b:.0f} tok/s", ctx))
    return out


def evaluate_targets(cpu: Results, cuda: Results | None) -> list[Target]:
    """Every target the results have figures for, CPU first, then the GPU's."""
    out: list[Target] = []
    for key, m in cpu["models"].items():
        out += _single(cpu, key, m, 0.97, "", "Single stream decode vs llama-bench")
        out += _http(key, m)
        out += _prefix(key, m)
    if cuda is not None:
        for key, m in cuda["models"].items():
            out += _single(cuda, key, m, 0.95, "cuda-",
                           "H100: single stream decode vs llama-bench CUDA")
            out += _cuda_streams(key, m)
    return out
