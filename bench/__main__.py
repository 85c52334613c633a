"""``python -m bench`` (``make bench``): LocalLoom against native llama.cpp, side by side.

Examples::

    python -m bench                       # full run on this machine, writes docs/PERFORMANCE.md
    python -m bench --quick               # TinyLlama shape + starter, short; bench/.work/quick/
    python -m bench --models starter --out /tmp/perf
    python -m bench --cuda --out $OUT     # on a CUDA machine: single stream + streams only
    python -m bench --report-only         # redraw docs/PERFORMANCE.md from bench/results/*.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.machine import physical_cores
from bench.models import MODEL_KEYS
from bench.report import render_cuda, write_report
from bench.run import REPO, ModelPlan, Plan, run

_FULL = {
    # One request per client: each level still sees every client busy at once, and the run
    # stays under an hour on 2 cores (two per client took 18 minutes for this model alone).
    "tinyllama": ModelPlan(reps=3, streams_levels=(1, 4, 8, 16), http_per_client=1),
    "starter": ModelPlan(reps=3),
    # 7B on 2 cores prefills ~10 tok/s: 8 clients' prompts alone take minutes per server,
    # so its HTTP levels are left to machines with more cores (--models llama2-7b there).
    "llama2-7b": ModelPlan(reps=3, http_levels=(), prefix_doc_tokens=0, warm_runs=2,
                           lookup_tokens=48),
}
_QUICK = ModelPlan(reps=1, http_levels=(1, 4), http_max_tokens=16, http_per_client=1,
                   prefix_doc_tokens=300, warm_runs=1, streams_levels=(1, 4), lookup_tokens=32)
# 32 streamed HTTP clients against llama-server -np 32 (issue 14); llama-cpp-python's own
# server runs one request at a time and is left to the CPU section.
_CUDA = ModelPlan(reps=3, http_levels=(32,), http_per_client=2, http_max_tokens=128,
                  http_kinds=("localloom", "llama-server"), http_stream=True,
                  prefix_doc_tokens=0, warm_runs=0, streams_levels=(1, 8, 32))
_CUDA_QUICK = ModelPlan(reps=1, http_levels=(), prefix_doc_tokens=0, warm_runs=0,
                        streams_levels=(1, 8))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="TinyLlama shape and the starter only, short runs (a smoke test).")
    p.add_argument("--models", default=None,
                   help=f"Comma-separated, from {', '.join(MODEL_KEYS)}.")
    p.add_argument("--cuda", action="store_true",
                   help="Build CUDA peers; measure single stream and streams on the GPU.")
    p.add_argument("--out", type=Path, default=None,
                   help="Where PERFORMANCE.md, the plot and the results go "
                        "(default: docs/, or bench/.work/quick with --quick).")
    p.add_argument("--threads", type=int, default=None,
                   help="Threads for every program (default: physical cores).")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="Stop starting new measurements after this long (default 50, quick 8).")
    p.add_argument("--work", type=Path, default=REPO / "bench" / ".work",
                   help="Cache of models, sources, builds and logs.")
    p.add_argument("--no-engine-overhead", action="store_true",
                   help="Skip bench/engine_overhead.py.")
    p.add_argument("--budget-from-start", action="store_true",
                   help="Count model builds against the budget too (a hard end time).")
    p.add_argument("--merge-results", type=Path, default=None,
                   help="An earlier results file of the same kind: its models that this run "
                        "does not measure are kept in the new results.")
    p.add_argument("--reps", type=int, default=None,
                   help="Interleaved repetitions per section (default: each model's own).")
    p.add_argument("--sections", default=None,
                   help="Comma-separated sections to re-measure (single, streams, http, "
                        "prefix_reuse, prompt_lookup, warm_start); with --merge-results the "
                        "models' other sections and the engine overhead table are kept.")
    p.add_argument("--report-only", action="store_true",
                   help="Only redraw the report from bench/results/cpu.json (and cuda.json).")
    return p


def _plan(args: argparse.Namespace) -> Plan:
    default_models = "tinyllama,starter" if args.quick else (
        "tinyllama,llama2-7b" if args.cuda else "tinyllama,starter,llama2-7b")
    models = [m.strip() for m in (args.models or default_models).split(",") if m.strip()]
    for m in models:
        if m not in MODEL_KEYS:
            raise SystemExit(f"unknown model {m!r}; choose from {', '.join(MODEL_KEYS)}")
    if args.cuda:
        per = {m: _CUDA_QUICK if args.quick else _CUDA for m in models}
    else:
        per = {m: _QUICK if args.quick else _FULL[m] for m in models}
    if args.reps:
        per = {m: dataclasses.replace(plan, reps=args.reps) for m, plan in per.items()}
    default_out = REPO / ("bench/.work/quick" if args.quick else "docs")
    out = args.out or default_out
    kind = "cuda" if args.cuda else "cpu"
    if args.out is None and not args.quick:
        results = REPO / "bench" / "results" / f"{kind}.json"
    else:
        results = out / f"results-{kind}.json"
    plan = Plan(models=models, per_model=per, quick=args.quick, cuda=args.cuda, out=out,
                results_path=results, work=args.work, threads=args.threads or physical_cores(),
                budget_s=60 * (args.budget_minutes or (8 if args.quick else 50)),
                engine_overhead=not args.no_engine_overhead,
                budget_from_start=args.budget_from_start, previous=_load(args.merge_results)
                if args.merge_results else None,
                sections=tuple(x.strip() for x in args.sections.split(",") if x.strip())
                if args.sections else None)
    if args.cuda:
        plan.n_prompt, plan.n_gen, plan.streams_pp, plan.streams_tg = 512, 128, 128, 128
    elif args.quick:
        plan.n_gen, plan.streams_tg = 32, 16
    return plan


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or redraw the report) and print where the report went."""
    args = _parser().parse_args(argv)
    results_dir = REPO / "bench" / "results"
    if args.report_only:
        cpu = _load(results_dir / "cpu.json")
        if cpu is None:
            raise SystemExit(f"no {results_dir / 'cpu.json'}: run `python -m bench` first")
        doc = write_report(cpu, _load(results_dir / "cuda.json"), args.out or REPO / "docs",
                           fresh_eo=False)
        print(f"wrote {doc}")
        return 0
    plan = _plan(args)
    t0 = time.monotonic()
    res = run(plan)
    if plan.cuda:
        doc = plan.out / "PERFORMANCE-cuda.md"
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(render_cuda(res, doc.read_text() if doc.exists() else ""))
    else:
        doc = write_report(res, _load(results_dir / "cuda.json"), plan.out,
                           fallback_old=REPO / "docs" / "PERFORMANCE.md")
    print(f"\nResults: {plan.results_path}\nReport:  {doc}\n"
          f"Total time {(time.monotonic() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
