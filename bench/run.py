"""One benchmark run: prepare models and peers, measure each section in turn, save results.

Sections run one at a time (nothing else of the bench runs beside a measurement) and each
checks the run's deadline first, so a slow machine ends with a shorter report rather than
an unbounded run. A section that fails records its error and the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import engine_runs as er
from bench.load import run_load, warm_up
from bench.lookup_runs import prompt_lookup_speed
from bench.machine import (
    describe_machine,
    load_average,
    measure_bandwidth,
    measure_gpu_bandwidth,
)
from bench.models import ModelFile, prepare_model
from bench.native import Peers, ensure_peers, run_batched_bench, run_llama_bench
from bench.servers import SERVER_KINDS, ServerSpec, running_server
from bench.texts import prompt_set

__all__ = ["ModelPlan", "Plan", "run"]

REPO = Path(__file__).resolve().parent.parent
EO_PATH = Path(__file__).with_name("engine_overhead.py")


@dataclass(frozen=True)
class ModelPlan:
    """How hard to measure one model (7B-shaped decode is ~8 tok/s on 2 cores)."""

    reps: int = 3
    http_levels: tuple[int, ...] = (1, 4, 8, 16)
    http_max_tokens: int = 64
    http_per_client: int = 2
    prefix_doc_tokens: int = 1000  # 0: skip
    warm_runs: int = 3  # 0: skip
    streams_levels: tuple[int, ...] = ()  # () : skip
    lookup_tokens: int = 128  # prompt lookup on a rewrite, off / auto / on; 0: skip
    http_kinds: tuple[str, ...] = SERVER_KINDS
    http_stream: bool = False  # streamed requests: time to first token is measured too


@dataclass
class Plan:
    """Everything one run does."""

    models: list[str]
    per_model: dict[str, ModelPlan]
    quick: bool
    cuda: bool
    out: Path
    results_path: Path
    work: Path
    threads: int
    budget_s: float
    n_prompt: int = 256
    n_gen: int = 64
    streams_pp: int = 32
    streams_tg: int = 32
    ctx_per_seq: int = 512
    engine_overhead: bool = True
    budget_from_start: bool = False  # True: model builds count against the budget too
    previous: dict[str, Any] | None = None  # earlier results; models not re-run are kept
    sections: tuple[str, ...] | None = None  # None: all; else only these (the rest is kept)
    log: Callable[[str], None] = print
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds left before the deadline."""
        return self.budget_s - (time.monotonic() - self.start)


def _write_models_toml(home: Path, models: list[ModelFile]) -> None:
    import tomli_w

    entries = []
    for m in models:
        gb = m.file_bytes / 1e9
        entries.append({
            "id": m.model_id, "display_name": m.label, "download_size": m.file_bytes,
            "ram_min_gb": round(gb * 1.1, 2), "ram_max_gb": round(gb * 1.5 + 0.5, 2),
            "context_length": m.n_ctx_train,
            "prompt_style": "completion" if m.key == "starter" else "chat",
            "source": {"kind": "local", "path": str(m.path.resolve())},
        })
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "models.toml").write_text(tomli_w.dumps({"model": entries}))


def _section(plan: Plan, res: dict[str, Any], key: str, name: str, need_s: float,
             fn: Callable[[], Any]) -> None:
    """Run one measurement unless the deadline is too close; record result or error."""
    if plan.sections is not None and name not in plan.sections:
        return  # not asked for: the earlier result (merged in) stays
    if plan.left() < need_s:
        res.setdefault("skipped", []).append(
            f"{key} / {name}: not enough time left ({plan.left():.0f} s < {need_s:.0f} s)")
        plan.log(f"[{key}] {name}: skipped (time budget)")
        return
    plan.log(f"[{key}] {name} ... ({plan.left() / 60:.1f} min left)")
    t0 = time.monotonic()
    try:
        value = fn()
    except Exception as exc:
        res["models"][key].setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[:1500]
        plan.log(f"[{key}] {name}: FAILED {type(exc).__name__}: {str(exc)[:400]}")
        return
    res["models"][key][name] = _plain(value)
    plan.log(f"[{key}] {name}: done in {time.monotonic() - t0:.0f} s: {_brief(value)}")
    _save(plan, res)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _brief(value: Any) -> str:
    text = json.dumps(_plain(value), default=str)
    return text if len(text) < 400 else text[:400] + " ..."


def _http(plan: Plan, model: ModelFile, mp: ModelPlan, peers: Peers) -> dict[str, Any]:
    """Every server at every client count. The batching servers start fresh for each count
    (their slot count is N); llama-cpp-python's, which runs one request at a time, once."""
    prompts = prompt_set(max(mp.http_levels) * mp.http_per_client)
    servers: dict[str, list[dict[str, Any] | None]] = {}
    for kind in mp.http_kinds:
        groups = [list(mp.http_levels)] if kind == "llama-cpp-python" else [
            [n] for n in mp.http_levels]
        done: dict[int, dict[str, Any]] = {}
        for group in groups:
            spec = ServerSpec(kind=kind, model=model, n_parallel=max(group),
                              ctx_per_seq=plan.ctx_per_seq, threads=plan.threads,
                              n_gpu_layers=99 if plan.cuda else 0, home=plan.work / "home",
                              peers=peers, log_dir=plan.work / "logs")
            try:
                with running_server(spec) as handle:
                    warm_up(handle, model.eos_id)
                    for n in group:
                        r = run_load(handle, prompts, clients=n, per_client=mp.http_per_client,
                                     max_tokens=mp.http_max_tokens, eos_id=model.eos_id,
                                     stream=mp.http_stream)
                        plan.log(f"    {kind} x{n}: {r.tokens_per_s:.1f} tok/s, p50 "
                                 f"{r.latency_p50_s:.2f} s, p95 {r.latency_p95_s:.2f} s, TTFT "
                                 f"p50 {r.ttft_p50_s:.3f} s, p95 {r.ttft_p95_s:.3f} s, "
                                 f"{r.errors} errors")
                        done[n] = dataclasses.asdict(r)
            except Exception as exc:  # the other servers and counts still get measured
                plan.log(f"    {kind} x{group}: FAILED {type(exc).__name__}: {str(exc)[:300]}")
        servers[kind] = [done.get(n) for n in mp.http_levels]
    return {"levels": list(mp.http_levels), "max_tokens": mp.http_max_tokens,
            "per_client": mp.http_per_client, "streamed": mp.http_stream, "servers": servers}


def _measure_model(plan: Plan, res: dict[str, Any], model: ModelFile, peers: Peers) -> None:
    key, mp = model.key, plan.per_model[model.key]
    opts = er.EngineOptions(home=plan.work / "home", threads=plan.threads, n_gpu_layers=None)
    ngl = 99 if plan.cuda else 0
    heavy = 4.0 if key == "llama2-7b" else 1.0
    need = (20 if plan.cuda else 120) * heavy
    _section(plan, res, key, "single", need, lambda: _single_interleaved(
        plan, model, peers, opts, mp.reps, ngl))
    for name in ("llama_bench", "engine_single"):  # stored as before, for the report
        if name in res["models"][key].get("single", {}):
            res["models"][key][name] = res["models"][key]["single"][name]
    if mp.streams_levels:
        levels = list(mp.streams_levels)
        reps = mp.reps if plan.cuda else 1
        per_rep = 15 if plan.cuda else 60  # seconds, both programs, all levels
        _section(plan, res, key, "streams", per_rep * heavy * reps, lambda: _streams_interleaved(
            plan, model, peers, opts, levels, reps, ngl))
        for name in ("batched_bench", "engine_streams"):  # stored as before, for the report
            if name in res["models"][key].get("streams", {}):
                res["models"][key][name] = res["models"][key]["streams"][name]
    if mp.http_levels:
        _section(plan, res, key, "http", (25 if plan.cuda else 150) * heavy,
                 lambda: _http(plan, model, mp, peers))
    if mp.prefix_doc_tokens and not plan.cuda:
        _section(plan, res, key, "prefix_reuse", 60 * heavy, lambda: er.prefix_reuse_ttft(
            opts, model, doc_tokens=mp.prefix_doc_tokens, reps=max(1, mp.reps - 1)))
    if mp.lookup_tokens:
        _section(plan, res, key, "prompt_lookup", 45 * heavy, lambda: prompt_lookup_speed(
            opts, model, reps=max(1, mp.reps - 1), max_tokens=mp.lookup_tokens))
    if mp.warm_runs and not plan.cuda:
        _section(plan, res, key, "warm_start", 20 * heavy, lambda: er.warm_start(
            opts, model, runs=mp.warm_runs))


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    sd = (sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
    return mean, sd


def _single_interleaved(plan: Plan, model: ModelFile, peers: Peers, opts: er.EngineOptions,
                        reps: int, ngl: int) -> dict[str, Any]:
    """llama-bench and the Engine, one repetition each in turn (A B A B ...): a shared
    machine drifts by 10-30% over minutes, and back-to-back blocks would measure the drift."""
    natives, engines = [], []
    for _ in range(reps):
        natives.append(run_llama_bench(peers, model.path, threads=plan.threads,
                                       n_prompt=plan.n_prompt, n_gen=plan.n_gen, reps=1,
                                       n_gpu_layers=ngl))
        engines.append(er.engine_single_stream(opts, model, n_prompt=plan.n_prompt,
                                               n_gen=plan.n_gen, reps=1))
    (pp, pp_sd), (tg, tg_sd) = (_mean_sd([n.pp_ts for n in natives]),
                                _mean_sd([n.tg_ts for n in natives]))
    (pf, pf_sd), (dc, dc_sd) = (_mean_sd([e.prefill_ts for e in engines]),
                                _mean_sd([e.decode_ts for e in engines]))
    # llama-bench records the git HEAD around its source: with the sdist's .git stripped
    # that is whatever repository encloses it, so the vendored commit is recorded instead.
    native = dataclasses.replace(natives[0], pp_ts=pp, pp_sd=pp_sd, tg_ts=tg, tg_sd=tg_sd,
                                 build=f"llama.cpp {peers.commit}")
    engine = dataclasses.replace(
        engines[0], prefill_ts=pf, prefill_sd=pf_sd, decode_ts=dc, decode_sd=dc_sd, reps=reps,
        reported_prefill_ts=_mean_sd([e.reported_prefill_ts for e in engines])[0],
        reported_decode_ts=_mean_sd([e.reported_decode_ts for e in engines])[0])
    return {"llama_bench": _plain(native), "engine_single": _plain(engine),
            "runs": {"llama_bench_pp": [n.pp_ts for n in natives],
                     "llama_bench_tg": [n.tg_ts for n in natives],
                     "engine_prefill": [e.prefill_ts for e in engines],
                     "engine_decode": [e.decode_ts for e in engines]},
            "decode_ratios": [e.decode_ts / n.tg_ts for e, n in zip(engines, natives,
                                                                     strict=True)]}


def _streams_interleaved(plan: Plan, model: ModelFile, peers: Peers, opts: er.EngineOptions,
                         levels: list[int], reps: int, ngl: int) -> dict[str, Any]:
    """llama-batched-bench and the engine's streams, in turns ``reps`` times: each level's
    mean, its standard deviation, and every repetition's figure."""
    natives, engines = [], []
    for _ in range(reps):
        natives.append(run_batched_bench(peers, model.path, threads=plan.threads,
                                         n_pp=plan.streams_pp, n_tg=plan.streams_tg,
                                         levels=levels, n_gpu_layers=ngl))
        engines.append(er.engine_streams(opts, model, levels=levels, n_pp=plan.streams_pp,
                                         n_tg=plan.streams_tg))
    bb, es = [], []
    for i, _ in enumerate(levels):
        tg = [run[i].speed_tg for run in natives]
        dec = [run[i].decode_ts for run in engines]
        (tg_m, tg_sd), (dec_m, dec_sd) = _mean_sd(tg), _mean_sd(dec)
        bb.append({**_plain(natives[0][i]), "speed_tg": tg_m, "speed_tg_sd": tg_sd,
                   "speed_tg_runs": tg})
        es.append({**_plain(engines[0][i]), "decode_ts": dec_m, "decode_sd": dec_sd,
                   "decode_runs": dec, "end_to_end_ts": _mean_sd(
                       [run[i].end_to_end_ts for run in engines])[0]})
    return {"batched_bench": bb, "engine_streams": es, "reps": reps}


def _engine_overhead(plan: Plan, res: dict[str, Any]) -> None:
    """bench/engine_overhead.py (issue 3): Engine vs raw llama-cpp-python; its table is kept
    in the results and drawn between the engine_overhead markers."""
    if not plan.engine_overhead or plan.cuda or not EO_PATH.exists():
        if plan.previous and "engine_overhead_md" in plan.previous:
            res["engine_overhead_md"] = plan.previous["engine_overhead_md"]  # not re-run
        return
    if plan.left() < 180:
        res["skipped"].append("engine_overhead: not enough time left")
        return
    plan.log(f"[engine_overhead] bench/engine_overhead.py ... ({plan.left() / 60:.1f} min left)")
    args = ["--threads", str(plan.threads), "--no-write"]
    if plan.quick:
        args += ["--reps", "2", "--gen", "32"]
    printed = io.StringIO()
    try:
        from bench import engine_overhead

        with contextlib.redirect_stdout(printed):
            engine_overhead.main(args)
    except (Exception, SystemExit) as exc:  # its failure is reported, not fatal
        res["skipped"].append(f"engine_overhead failed: {exc!r}"[:500])
        plan.log(f"[engine_overhead] FAILED: {exc!r}")
        return
    text = printed.getvalue()
    start = text.rfind("## Engine overhead")
    res["engine_overhead_md"] = text[start:].strip() if start >= 0 else text.strip()
    plan.log("[engine_overhead] done")


def run(plan: Plan) -> dict[str, Any]:
    """Measure everything in `plan`; save and return the results."""
    work = plan.work
    load_before = load_average()  # before anything of ours runs: other programs' load
    plan.log("Preparing the native peers ...")
    peers = ensure_peers(work, REPO, cuda=plan.cuda, jobs=max(2, plan.threads), log=plan.log)
    if plan.models and not plan.budget_from_start:
        # The budget covers measurements, not one-time builds: the first model (the usual
        # first-run cost) is built before the clock starts; later ones build lazily.
        prepare_model(plan.models[0], work / "models", plan.threads, plan.log)
        plan.start = time.monotonic()
    res: dict[str, Any] = {
        "kind": "cuda" if plan.cuda else "cpu",
        "machine": dataclasses.asdict(describe_machine(peers.commit)),
        "settings": {"threads": plan.threads, "quick": plan.quick, "n_prompt": plan.n_prompt,
                     "n_gen": plan.n_gen, "reps": min(plan.per_model[k].reps for k in plan.models),
                     "streams_pp": plan.streams_pp, "streams_tg": plan.streams_tg,
                     "ctx_per_seq": plan.ctx_per_seq},
        "models": {k: v for k, v in (plan.previous or {}).get("models", {}).items()
                   if k not in plan.models},
        "skipped": [],
        "load_average": {"start": load_before},
    }
    plan.log("Measuring memory bandwidth ...")
    bw = measure_gpu_bandwidth() if plan.cuda else measure_bandwidth(threads=plan.threads)
    res["bandwidth"] = dataclasses.asdict(bw) if bw else None
    try:
        _measure_all(plan, res, peers)
    except KeyboardInterrupt:  # a hard deadline (timeout -s INT): keep what was measured
        res["skipped"].append("the run was interrupted; later sections did not run")
        plan.log("Interrupted: writing what was measured so far")
    _save(plan, res)
    return res


def _measure_all(plan: Plan, res: dict[str, Any], peers: Peers) -> None:
    prepared: list[ModelFile] = []
    for key in plan.models:
        if plan.left() < 60:
            res["skipped"].append(f"{key}: not enough time left to start it")
            continue
        plan.log(f"Preparing model {key} ...")
        m = prepare_model(key, plan.work / "models", plan.threads, plan.log)
        prepared.append(m)
        _write_models_toml(plan.work / "home", prepared)
        kept = (plan.previous or {}).get("models", {}).get(key, {}) if plan.sections else {}
        res["models"][key] = {**kept, "file": {**dataclasses.asdict(m), "path": m.path.name}}
        _measure_model(plan, res, m, peers)
    _engine_overhead(plan, res)


def _save(plan: Plan, res: dict[str, Any]) -> None:
    res.setdefault("load_average", {})["end"] = load_average()
    res["duration_s"] = time.monotonic() - plan.start
    plan.results_path.parent.mkdir(parents=True, exist_ok=True)
    plan.results_path.write_text(json.dumps(res, indent=1, default=str) + "\n")
