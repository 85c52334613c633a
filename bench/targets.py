"""The "Done when" figures of issues 6 and 14, checked against a run's results.

Issue 14 raised the speed targets: one stream >= 0.98x llama-bench (CPU and GPU), 8 and 32
streams >= 1.0x llama-batched-bench's aggregate on the GPU, and 32 streamed HTTP clients
>= 1.5x ``llama-server -np 32`` there. GPU targets name the card the results were measured
on (the results' ``machine.gpu``), never a card written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Target", "card_name", "evaluate_targets"]

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


def card_name(r: Results) -> str:
    """The measured card's name as nvidia-smi gave it ("NVIDIA H200"), or "GPU"."""
    gpu = str((r.get("machine") or {}).get("gpu") or "").split(",")[0].strip()
    return gpu or "GPU"


def _spread(xs: list[float] | None) -> str:
    if not xs or len(xs) < 2:
        return ""
    return f", {min(xs):.2f}–{max(xs):.2f}× over {len(xs)} runs"


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
    ratios = (m.get("single") or {}).get("decode_ratios")
    return [Target(f"{prefix}single-decode.{key}", label, key, a / b, need, True,
                   f"{a:.1f} vs {b:.1f} tok/s{_spread(ratios)}", ctx)]


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


def _cuda_streams(r: Results, key: str, m: dict[str, Any]) -> list[Target]:
    bb = {p["pl"]: p for p in m.get("batched_bench") or []}
    out = []
    for p in m.get("engine_streams") or []:
        n = p["streams"]
        if n not in (8, 32) or n not in bb or not _ok(p["decode_ts"], bb[n]["speed_tg"]):
            continue
        a, b = p["decode_ts"], bb[n]["speed_tg"]
        ctx = (f"End to end (prefill and ramp included) LocalLoom made {p['end_to_end_ts']:.0f} "
               f"tok/s with {n} streams; spread: LocalLoom ± {p.get('decode_sd', 0):.0f}, "
               f"llama-batched-bench ± {bb[n].get('speed_tg_sd', 0):.0f} tok/s.")
        runs = zip(p.get("decode_runs") or [], bb[n].get("speed_tg_runs") or [], strict=False)
        ratios = [x / y for x, y in runs if y]
        out.append(Target(f"cuda-streams-{n}.{key}", f"{card_name(r)}: {n} streams vs "
                          "llama-batched-bench aggregate", key, a / b, 1.0, True,
                          f"{a:.0f} vs {b:.0f} tok/s{_spread(ratios)}", ctx))
    return out


def _cuda_http(r: Results, key: str, m: dict[str, Any]) -> list[Target]:
    http = m.get("http")
    if not http:
        return []
    out = []
    for n in http["levels"]:
        ll, ls = _level(http, "localloom", n), _level(http, "llama-server", n)
        a, b = _rate(ll), _rate(ls)
        if n != 32 or not _ok(a, b):
            continue
        assert ll is not None and ls is not None and a is not None and b is not None
        ctx = (f"Time to first token p50 / p95: LocalLoom {ll.get('ttft_p50_s', math.nan):.3f} /"
               f" {ll.get('ttft_p95_s', math.nan):.3f} s, llama-server "
               f"{ls.get('ttft_p50_s', math.nan):.3f} / {ls.get('ttft_p95_s', math.nan):.3f} s.")
        out.append(Target(f"cuda-http32.{key}", f"{card_name(r)}: 32 streamed HTTP clients vs "
                          "llama-server -np 32", key, a / b, 1.5, True,
                          f"{a:.0f} vs {b:.0f} tok/s", ctx))
    return out


def evaluate_targets(cpu: Results, cuda: Results | None) -> list[Target]:
    """Every target the results have figures for, CPU first, then the GPU's."""
    out: list[Target] = []
    for key, m in cpu["models"].items():
        out += _single(cpu, key, m, 0.98, "", "Single stream decode vs llama-bench")
        out += _http(key, m)
        out += _prefix(key, m)
    if cuda is not None:
        card = card_name(cuda)
        for key, m in cuda["models"].items():
            out += _single(cuda, key, m, 0.98, "cuda-",
                           f"{card}: single stream decode vs llama-bench CUDA")
            out += _cuda_streams(cuda, key, m)
            out += _cuda_http(cuda, key, m)
    return out
