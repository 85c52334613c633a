"""Write docs/PERFORMANCE.md and the concurrency plot from the saved results.

Three kinds of separately written text survive regeneration: the engine-overhead section
between ``<!-- engine_overhead:start -->`` and ``<!-- engine_overhead:end -->``
(bench/engine_overhead.py writes it), the robustness section (bench/robustness.py), and each
"why" note between ``<!-- why:ID:start -->`` and ``<!-- why:ID:end -->``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from bench.targets import Target, evaluate_targets

__all__ = ["render", "write_plot", "write_report"]

EO_START, EO_END = "<!-- engine_overhead:start -->", "<!-- engine_overhead:end -->"
# bench/robustness.py writes this section on its own; a redraw keeps it.
RB_START, RB_END = "<!-- robustness:start -->", "<!-- robustness:end -->"
# bench/upstream.py writes this section on its own; a redraw keeps it too.
UP_START, UP_END = "<!-- upstream:start -->", "<!-- upstream:end -->"
_WHY_RE = re.compile(r"<!-- why:([\w.-]+):start -->\n?(.*?)<!-- why:\1:end -->", re.S)
_WHY_DEFAULT = "_Why: not yet explained (to be written from the measurements above)._\n"
_SERVER_LABELS = {
    "localloom": "LocalLoom",
    "llama-server": "llama-server",
    "llama-cpp-python": "llama-cpp-python",
}

Results = dict[str, Any]


def _f(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b or math.isnan(a) or math.isnan(b):
        return "–"
    return f"{a / b:.2f}×"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def preserved_blocks(old: str) -> tuple[str | None, dict[str, str]]:
    """The engine-overhead section and the why notes of an existing document."""
    eo = None
    if EO_START in old and EO_END in old:
        eo = old[old.index(EO_START): old.index(EO_END) + len(EO_END)]
    whys = {m.group(1): m.group(2) for m in _WHY_RE.finditer(old)}
    return eo, whys


def _why(key: str, whys: dict[str, str]) -> str:
    body = whys.get(key, _WHY_DEFAULT)
    return f"<!-- why:{key}:start -->\n{body}<!-- why:{key}:end -->\n"


def _machine(r: Results) -> str:
    m = r["machine"]
    bw = r.get("bandwidth") or {}
    rows = [
        ["CPU", f"{m['cpu']} — {m['physical_cores']} physical cores, "
                f"{m['logical_cpus']} logical CPUs"],
        ["CPU features llama.cpp uses", m["cpu_features"]],
        ["RAM", f"{m['ram_gb']:.1f} GB"],
        ["GPU", m["gpu"]],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["llama-cpp-python", m["llama_cpp_python"]],
        ["llama.cpp (vendored, same source for the peers)", m["llama_cpp_commit"]],
        ["Memory read bandwidth", f"{_f(bw.get('gb_per_s'))} GB/s ({bw.get('method', '–')})"],
        ["Threads used", f"{r['settings']['threads']} (one per physical core) for every program"],
        ["Date", m["date"]],
    ]
    load = r.get("load_average") or {}
    if load.get("start") is not None:
        rows.append(["Load average (1 min) at start / end",
                     f"{load['start']} / {load.get('end', '–')}"])
    out = _table(["", ""], rows)
    before = load.get("start") or 0.0
    if before > 0.5 * m["physical_cores"] + 0.5:  # sampled before the bench itself ran
        out += ("\n**Warning:** other programs were running when this run began (load average "
                f"{before} on {m['physical_cores']} cores); its figures may be lower than this "
                "machine gives.\n")
    return out


def _roofline(r: Results) -> str:
    bw = (r.get("bandwidth") or {}).get("gb_per_s")
    rows = []
    for key, m in r["models"].items():
        f = m["file"]
        roof = bw * 1e9 / f["bytes_per_token"] if bw else None
        lb = (m.get("llama_bench") or {}).get("tg_ts")
        ll = (m.get("engine_single") or {}).get("decode_ts")
        pct = [f"{100 * x / roof:.0f}%" if x and roof else "–" for x in (lb, ll)]
        rows.append([key, f"{f['file_bytes'] / 1e6:,.0f} MB",
                     f"{f['bytes_per_token'] / 1e6:,.0f} MB", _f(roof),
                     f"{_f(lb)} ({pct[0]})", f"{_f(ll)} ({pct[1]})"])
    return _table(["Model", "File", "Weights read per token", "Roofline decode tok/s",
                   "llama-bench decode (% of roofline)", "LocalLoom decode (% of roofline)"], rows)


def _pm(mean: float | None, sd: float | None) -> str:
    return "–" if mean is None else f"{_f(mean)} ± {_f(sd)}"


def _range(xs: list[float] | None) -> str:
    return f" ({_f(min(xs))}–{_f(max(xs))})" if xs and len(xs) > 1 else ""


def _single(r: Results) -> str:
    rows = []
    s = r["settings"]
    for key, m in r["models"].items():
        lb, ll = m.get("llama_bench") or {}, m.get("engine_single") or {}
        runs = (m.get("single") or {}).get("runs") or {}
        rows.append([
            key, _pm(lb.get("pp_ts"), lb.get("pp_sd")) + _range(runs.get("llama_bench_pp")),
            _pm(ll.get("prefill_ts"), ll.get("prefill_sd")) + _range(runs.get("engine_prefill")),
            _ratio(ll.get("prefill_ts"), lb.get("pp_ts")),
            _pm(lb.get("tg_ts"), lb.get("tg_sd")) + _range(runs.get("llama_bench_tg")),
            _pm(ll.get("decode_ts"), ll.get("decode_sd")) + _range(runs.get("engine_decode")),
            _ratio(ll.get("decode_ts"), lb.get("tg_ts")),
        ])
    head = (f"Prefill of a {s['n_prompt']}-token prompt and decode of {s['n_gen']} tokens, "
            f"{s['reps']} repetitions each: mean ± standard deviation (lowest–highest), "
            f"{s['threads']} threads. llama-bench (`-p {s['n_prompt']} -n {s['n_gen']} "
            f"-t {s['threads']} -r 1`, once per repetition) and the Engine take turns, so a "
            "drifting machine affects both alike; a prefill ratio whose ranges overlap is "
            "noise, not a difference. LocalLoom's figures are the `Engine` seen "
            "from Python (streamed; prefill = prompt tokens / time to first token).\n\n")
    table = _table(["Model", "llama-bench pp tok/s", "LocalLoom prefill tok/s", "ratio",
                    "llama-bench tg tok/s", "LocalLoom decode tok/s", "ratio"], rows)
    return head + table + _memory(r)


def _memory(r: Results) -> str:
    rows = []
    for key, m in r["models"].items():
        ll = m.get("engine_single") or {}
        if ll.get("host_rss_bytes"):
            gpu = ll.get("gpu_bytes")
            rows.append([key, _f(ll["host_rss_bytes"] / 2**20, 0),
                         _f(gpu / 2**20, 0) if gpu else "–",
                         _f(ll.get("reported_prefill_ts")), _f(ll.get("reported_decode_ts"))])
    if not rows:
        return ""
    return ("\nThe engine's own figures: `runtime_stats().memory_bytes` is this process's "
            "resident host memory (RSS), not GPU memory, which nvidia-smi reports per process; "
            "prefill and decode rates are what `runtime_stats()` said after the "
            f"{r['settings']['n_prompt']}-token prompts and after the decode runs.\n\n"
            + _table(["Model", "Host RSS MiB", "GPU memory MiB", "runtime_stats prefill tok/s",
                      "runtime_stats decode tok/s"], rows))


def _http(r: Results) -> str:
    out = []
    for key, m in r["models"].items():
        http = m.get("http")
        if not http:
            continue
        servers = http["servers"]
        out.append(f"**{key}** — {http['max_tokens']} tokens per request, {http['per_client']} "
                   f"request(s) per client, temperature 0, end-of-sequence banned.\n\n")
        rows = []
        for i, n in enumerate(http["levels"]):
            ll, ls, lp = (_pick(servers, k, i)
                          for k in ("localloom", "llama-server", "llama-cpp-python"))
            rows.append([
                str(n), _f(ll.get("tokens_per_s")), _f(ls.get("tokens_per_s")),
                _f(lp.get("tokens_per_s")),
                _ratio(ll.get("tokens_per_s"), ls.get("tokens_per_s")),
                _ratio(ll.get("tokens_per_s"), lp.get("tokens_per_s")),
                _lat(ll), _lat(ls), _lat(lp),
            ])
        out.append(_table(["Clients", "LocalLoom tok/s", "llama-server tok/s",
                           "llama-cpp-python tok/s", "LL / llama-server", "LL / llama-cpp-python",
                           "LocalLoom p50 / p95 s", "llama-server p50 / p95 s",
                           "llama-cpp-python p50 / p95 s"], rows))
        errors = [f"{k}: {run.get('errors')} failed ({run.get('first_error')})"
                  for k, runs in servers.items() for run in runs if run and run.get("errors")]
        if errors:
            out.append("\nFailed requests: " + "; ".join(errors) + "\n")
        out.append("\n")
    return "".join(out)


def _pick(servers: dict[str, Any], kind: str, i: int) -> dict[str, Any]:
    runs = servers.get(kind) or []
    return dict(runs[i]) if i < len(runs) and runs[i] else {}


def _lat(run: dict[str, Any]) -> str:
    if not run:
        return "–"
    return f"{_f(run.get('latency_p50_s'), 2)} / {_f(run.get('latency_p95_s'), 2)}"


def _streams(r: Results) -> str:
    rows = []
    for key, m in r["models"].items():
        bb = {p["pl"]: p for p in m.get("batched_bench") or []}
        for p in m.get("engine_streams") or []:
            b = bb.get(p["streams"], {})
            rows.append([key, str(p["streams"]),
                         _pm(b.get("speed_tg"), b.get("speed_tg_sd", 0.0))
                         + _range(b.get("speed_tg_runs")),
                         _pm(p["decode_ts"], p.get("decode_sd", 0.0))
                         + _range(p.get("decode_runs")),
                         _ratio(p["decode_ts"], b.get("speed_tg")), _f(p["end_to_end_ts"])])
    if not rows:
        return ""
    s = r["settings"]
    return (f"N requests of a {s['streams_pp']}-token prompt and {s['streams_tg']} new tokens "
            "at once through `AsyncEngine` (in-process, no HTTP), against "
            f"`llama-batched-bench -npp {s['streams_pp']} -ntg {s['streams_tg']} -npl ...`. "
            "The aggregate decode rate counts tokens over the span in which all N sequences "
            "decode, as llama-batched-bench's S_TG does; the last column includes prefill "
            "and the ramp. Where runs were repeated (the two programs in turns): mean ± "
            "standard deviation (lowest–highest).\n\n"
            + _table(["Model", "Streams", "llama-batched-bench S_TG tok/s",
                      "LocalLoom aggregate decode tok/s", "ratio", "LocalLoom end-to-end tok/s"],
                     rows))


def _prefix(r: Results) -> str:
    rows = []
    for key, m in r["models"].items():
        p = m.get("prefix_reuse")
        if p:
            rows.append([key, str(p["doc_tokens"]), _f(p["cold_ttft_s"] * 1000, 0),
                         _f(p["reuse_ttft_s"] * 1000, 0),
                         _ratio(p["reuse_ttft_s"], p["cold_ttft_s"]), p["cold_method"]])
    if not rows:
        return "Not measured in this run.\n"
    return _table(["Model", "Prompt tokens", "Cold TTFT ms", "With prefix reuse TTFT ms",
                   "reuse / cold", "How cold was measured"], rows)


def _lookup(r: Results) -> str:
    rows = []
    for key, m in r["models"].items():
        modes = {p["mode"]: p for p in m.get("prompt_lookup") or []}
        off = modes.get("off")
        for name, p in modes.items():
            right = (f"{p['accepted']} of {p['drafted']}" if p["drafted"] else "none guessed")
            rows.append([key, f"`{name}`", _pm(p["decode_ts"], p["decode_sd"]),
                         _ratio(p["decode_ts"], off["decode_ts"]) if off else "–", right])
    if not rows:
        return "Not measured in this run.\n"
    return _table(["Model", "prompt_lookup", "Decode tok/s", "vs off", "Guessed tokens right"],
                  rows)


def _warm(r: Results) -> str:
    rows = []
    for key, m in r["models"].items():
        w = m.get("warm_start")
        if w:
            rows.append([key, f"`{w['command']}`", _f(w["median_s"], 2), _f(w["best_s"], 2),
                         str(w["runs"])])
    if not rows:
        return "Not measured in this run.\n"
    return _table(["Model", "Command", "Median s", "Best s", "Runs"], rows)


def _targets(targets: list[Target], whys: dict[str, str]) -> str:
    if not targets:
        return "No target has both of its figures in this run.\n"
    rows = [[t.label, t.model, t.measured, t.needed, "yes" if t.met else "**no**",
             "–" if t.met else t.short_by] for t in targets]
    out = [_table(["Target (issues 6, 14)", "Model", "Measured", "Needed", "Met?",
                   "Missed by"], rows)]
    missed = [t for t in targets if not t.met]
    for t in missed:
        out.append(f"\n**{t.label} — {t.model}: missed by {t.short_by}.** {t.context}\n\n")
        out.append(_why(t.key, whys))
    return "".join(out)


def _gpu_section(cuda: Results | None) -> str:
    if cuda is None:
        return ("Not run yet: `bench/gpu/run_device.sh` runs `python -m bench --cuda` on the "
                "lent GPU machine (see docs/GPU.md); its results file, copied to "
                "bench/results/cuda.json, is rendered here.\n")
    m = cuda["machine"]
    parts = [f"Card: **{m['gpu']}**; host CPU {m['cpu']}; {m['date']}; llama.cpp "
             f"{m['llama_cpp_commit']}, llama-cpp-python {m['llama_cpp_python']} built with "
             "`-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90`. GPU memory read bandwidth: "
             f"{_f((cuda.get('bandwidth') or {}).get('gb_per_s'))} GB/s "
             f"({(cuda.get('bandwidth') or {}).get('method', '–')}).\n\n",
             "### Single stream (all layers on the GPU)\n\n", _single(cuda), "\n",
             "### Roofline\n\n", _roofline(cuda), "\n",
             "### Streams at once vs llama-batched-bench\n\n", _streams(cuda) or "Not run.\n",
             "\n### Streamed HTTP clients vs llama-server\n\n", _http_gpu(cuda),
             "\n### Prompt-lookup speculative decoding on a rewrite\n\n", _lookup(cuda)]
    if cuda.get("skipped"):
        parts.append("\n**Not measured in this run** (the device call's time ran out): "
                     + "; ".join(cuda["skipped"]) + ".\n")
    return "".join(parts)


def _http_gpu(r: Results) -> str:
    rows = []
    for key, m in r["models"].items():
        http = m.get("http")
        if not http:
            continue
        for i, n in enumerate(http["levels"]):
            ll, ls = (_pick(http["servers"], k, i) for k in ("localloom", "llama-server"))
            rows.append([key, str(n), _f(ll.get("tokens_per_s")), _f(ls.get("tokens_per_s")),
                         _ratio(ll.get("tokens_per_s"), ls.get("tokens_per_s")),
                         _ttft(ll), _ttft(ls), _lat(ll), _lat(ls)])
    if not rows:
        return "Not measured in this run.\n"
    h = next(m["http"] for m in r["models"].values() if m.get("http"))
    return (f"`localloom serve` with `LOCALLOOM_N_PARALLEL=N` against `llama-server -np N "
            f"--cont-batching`, each fresh, all layers on the GPU; N clients at once, "
            f"{h['per_client']} streamed `/v1/completions` request(s) each of {h['max_tokens']} "
            "tokens (temperature 0, end-of-sequence banned). Time to first token is to the first "
            "chunk with text.\n\n"
            + _table(["Model", "Clients", "LocalLoom tok/s", "llama-server tok/s", "ratio",
                      "LocalLoom TTFT p50 / p95 s", "llama-server TTFT p50 / p95 s",
                      "LocalLoom latency p50 / p95 s", "llama-server latency p50 / p95 s"],
                     rows))


def _card_run(cuda: Results) -> str:
    m = cuda["machine"]
    return f"an {str(m['gpu']).split(',')[0]} ({m['date']})"


def _ttft(run: dict[str, Any]) -> str:
    if not run:
        return "–"
    return f"{_f(run.get('ttft_p50_s'), 3)} / {_f(run.get('ttft_p95_s'), 3)}"


def render(cpu: Results, cuda: Results | None, old: str, plot_name: str | None,
           fresh_eo: bool = True) -> str:
    """The whole document; `old` is the previous one (its preserved blocks are kept).

    The engine-overhead table comes from this run's results when it has one (`fresh_eo`),
    else from the old document (bench/engine_overhead.py may have written it alone).
    """
    eo, whys = preserved_blocks(old)
    rb = (old[old.index(RB_START): old.index(RB_END) + len(RB_END)] + "\n\n"
          if RB_START in old and RB_END in old else "")
    if UP_START in old and UP_END in old:
        rb += old[old.index(UP_START): old.index(UP_END) + len(UP_END)] + "\n\n"
    if fresh_eo and cpu.get("engine_overhead_md"):
        eo = f"{EO_START}\n{cpu['engine_overhead_md']}\n{EO_END}"
    targets = evaluate_targets(cpu, cuda)
    s = cpu["settings"]
    parts = [
        "# Performance\n\n",
        f"Generated by `make bench` (`python -m bench{' --quick' if s['quick'] else ''}`) on "
        f"{cpu['machine']['date']} in {cpu['duration_s'] / 60:.1f} minutes; models: "
        f"{', '.join(cpu['models']) or 'none'}. Every figure below comes from that one run, "
        "side by side on the same machine, model files and thread count. Regenerate with "
        "`make bench`; `python -m bench --report-only` redraws this page from "
        "bench/results/*.json.",
        f" The GPU section and its targets come from their own run on {_card_run(cuda)}.\n\n"
        if cuda else "\n\n",
        "## Targets\n\n", _targets(targets, whys), "\n",
        "## Machine\n\n", _machine(cpu), "\n",
        "## Memory bandwidth and the decode roofline\n\n",
        "Decoding one token reads every weight once (the token embedding only one row, "
        "unless the output layer shares it), so bandwidth ÷ bytes per token bounds decode "
        "speed on this machine.\n\n", _roofline(cpu), "\n",
        "## Single stream: LocalLoom Engine vs llama-bench\n\n", _single(cpu), "\n",
        "## Concurrent HTTP clients\n\n",
        "Aggregate completion tokens/s with N clients sending requests at once to "
        "`/v1/completions`, and each request's latency (p50 / p95). LocalLoom: `localloom "
        "serve` with `LOCALLOOM_N_PARALLEL=N`; llama-server: `-np N -c N×ctx --cont-batching`; "
        "llama-cpp-python: `python -m llama_cpp.server` (it runs one request at a time). "
        "LocalLoom and llama-server start fresh for each N (N slots); llama-cpp-python's "
        "server starts once per model.\n\n",
        f"![Aggregate tokens/s vs clients]({plot_name})\n\n" if plot_name else "",
        _http(cpu),
        "## Batched decode in the engine vs llama-batched-bench\n\n",
        _streams(cpu) or "Not measured in this run.\n", "\n",
        "## Prefix reuse: time to first token of a second task on the same text\n\n",
        _prefix(cpu), "\n",
        "## Prompt-lookup speculative decoding on a rewrite\n\n",
        "One stream: the rewrite task's prompt on the opening of examples/article.txt, 128 "
        "greedy tokens (48 for the 7B shape; end of text banned), with "
        "`LOCALLOOM_PROMPT_LOOKUP` off, auto (the default) and on. Random-weight models "
        "do not copy their prompt, so there lookup shows its cost. `auto` guesses only where a "
        "plain step takes 2 ms or more, and pauses a request while its guessing measures slower "
        "than plain decoding.\n\n",
        _lookup(cpu), "\n",
        "## Warm start to first token from the CLI\n\n",
        "The model file is already in the page cache (one unmeasured run first).\n\n",
        _warm(cpu), "\n",
        eo or f"{EO_START}\n## Engine overhead: LocalLoom Engine vs llama-cpp-python\n\n"
              f"Not measured yet (bench/engine_overhead.py writes this section).\n{EO_END}",
        "\n\n", rb, "## GPU\n\n", _gpu_section(cuda), "\n",
        "## Method notes\n\n", _notes(cpu),
    ]
    return "".join(parts)


def _notes(r: Results) -> str:
    notes = [
        "Synthetic models have the exact tensor shapes of TinyLlama-1.1B and Llama-2-7B, random "
        "weights, written as F16 by `localloom.testing.write_synthetic_gguf` and quantized to "
        "Q4_0 by llama.cpp's own quantizer; they cost what the real files cost to run.",
        "Peers are built from the llama.cpp source vendored in the pinned llama-cpp-python sdist "
        "(`pip download llama-cpp-python==<pin>`), so all programs run the same kernels.",
        "HTTP requests: temperature 0, `logit_bias` −100 on the end-of-sequence token so every "
        "request generates its full `max_tokens`; throughput counts the completion tokens the "
        "server reports.",
        "Programs run one at a time; nothing else of the benchmark runs alongside a measurement.",
    ]
    notes += [f"Skipped: {x}" for x in r.get("skipped", [])]
    notes += [str(x) for x in r.get("notes", [])]  # written into the results by hand
    notes += [f"Error in {key} / {section}: {message}" for key, m in r["models"].items()
              for section, message in (m.get("errors") or {}).items()]
    return "".join(f"- {n}\n" for n in notes)


def write_plot(cpu: Results, path: Path) -> bool:
    """Aggregate tokens/s against clients, one panel per model; False without data."""
    models = {k: m["http"] for k, m in cpu["models"].items() if m.get("http")}
    if not models:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, (key, http) in zip(axes[0], models.items(), strict=True):
        for kind, runs in http["servers"].items():
            pts = [(run["clients"], run["tokens_per_s"]) for run in runs if run]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=_SERVER_LABELS.get(kind, kind))
        ax.set_title(key)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("aggregate tokens/s")
        ax.set_xticks(http["levels"])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{cpu['machine']['cpu']}, {cpu['settings']['threads']} threads")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(cpu: Results, cuda: Results | None, out_dir: Path,
                 fallback_old: Path | None = None, fresh_eo: bool = True) -> Path:
    """Write PERFORMANCE.md (and the plot) into `out_dir`; returns the document's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = out_dir / "PERFORMANCE.md"
    old = doc.read_text() if doc.exists() else ""
    if EO_START not in old and fallback_old is not None and fallback_old.exists():
        eo, _ = preserved_blocks(fallback_old.read_text())
        old += "\n" + (eo or "")
    plot = out_dir / "perf_concurrency.png"
    plot_name = plot.name if write_plot(cpu, plot) else None
    doc.write_text(render(cpu, cuda, old, plot_name, fresh_eo))
    return doc


def render_cuda(cuda: Results, old: str) -> str:
    """A GPU-only page (what a `--cuda` run writes beside its results file)."""
    _, whys = preserved_blocks(old)
    targets = evaluate_targets({"models": {}}, cuda)
    return ("# Performance on the GPU\n\n" + "## Targets\n\n" + _targets(targets, whys) + "\n"
            + "## Figures\n\n" + _gpu_section(cuda) + "\n## Method notes\n\n" + _notes(cuda))
