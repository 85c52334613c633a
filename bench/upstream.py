"""LocalLoom in front of llama-server vs llama-server alone: aggregate tokens/s.

``python -m bench.upstream [--clients 8 32] [--reps 3] [--max-tokens 32]`` starts
llama-server (built from the pinned source, ``make llama-server``) on the starter model and a
``localloom serve --upstream`` in front of it, then for each client count sends the same
batch of ``/v1/completions`` requests (end of text banned, so every answer has the same
length) straight to llama-server and through LocalLoom, alternating which goes first in each
repetition. It writes bench/results/upstream.json and the section between
``<!-- upstream:start -->`` and ``<!-- upstream:end -->`` of docs/PERFORMANCE.md.

On a GPU machine (``--gpu-layers 99 --model tinyllama``, llama-server named by
``LOCALLOOM_LLAMA_SERVER``) the results go to bench/results/upstream-cuda.json: there the
upstream computes on the GPU and LocalLoom's own CPU time no longer competes with it, as in
a real deployment. The section shows every results file present.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from bench.models import prepare_model
from bench.report import UP_END, UP_START
from bench.upstream_peer import ensure_llama_server

__all__ = ["main", "measure", "saved_results", "section"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "upstream.json"
RESULTS_CUDA = REPO / "bench" / "results" / "upstream-cuda.json"
DOC = REPO / "docs" / "PERFORMANCE.md"
CTX_PER_SEQ = 256


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, headers: dict[str, str], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server for {url} exited"
        try:
            if httpx.get(url + "/v1/models", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def _batch(url: str, headers: dict[str, str], model: str, clients: int, max_tokens: int,
           eos: int, stream: bool = False) -> float:
    """Aggregate completion tokens/s of ``clients`` concurrent requests (streamed ones
    read every event, as a chat window would)."""
    def one(i: int) -> int:
        body = {"model": model, "prompt": f"Request {i}: the history of the river", "seed": i,
                "max_tokens": max_tokens, "temperature": 0.8, "logit_bias": {str(eos): -100}}
        if not stream:
            r = httpx.post(url + "/v1/completions", headers=headers, timeout=600, json=body)
            r.raise_for_status()
            return int(r.json()["usage"]["completion_tokens"])
        body |= {"stream": True, "stream_options": {"include_usage": True}}
        tokens = 0
        with httpx.stream("POST", url + "/v1/completions", headers=headers, timeout=600,
                          json=body) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    usage = json.loads(line[6:]).get("usage")
                    tokens = int(usage["completion_tokens"]) if usage else tokens
        return tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        tokens = sum(pool.map(one, range(clients)))
    return tokens / (time.perf_counter() - started)


def measure(clients: list[int], reps: int, max_tokens: int, threads: int, *,
            model_key: str = "starter", gpu_layers: int = 0,
            modes: tuple[str, ...] = ("whole",)) -> dict[str, Any]:
    """Start both servers and measure; returns the results document."""
    work = REPO / "bench" / ".work"
    model = prepare_model(model_key, work / "models", threads)
    exe = ensure_llama_server(work)
    most = max(clients)
    ls_port, ll_port = _port(), _port()
    ls_url, ll_url = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{ll_port}"
    home = Path(tempfile.mkdtemp(prefix="bench-upstream-"))
    procs = [subprocess.Popen(
        [str(exe), "-m", str(model.path), "--alias", "starter", "--host", "127.0.0.1",
         "--port", str(ls_port), "-np", str(most), "-c", str(most * CTX_PER_SEQ),
         "-t", str(threads), "--cont-batching", "-ngl", str(gpu_layers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait(ls_url, {}, procs[0])
        env = {**os.environ, "LOCALLOOM_HOME": str(home), "LOCALLOOM_OFFLINE": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "localloom", "serve", "--port", str(ll_port),
             "--upstream", f"ls={ls_url}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        token = ""
        for _ in range(100):
            path = home / "config" / "server-token"
            if path.exists() and path.read_text().strip():
                token = path.read_text().strip()
                break
            time.sleep(0.2)
        front = {"Authorization": f"Bearer {token}"}
        _wait(ll_url, front, procs[1])
        _batch(ll_url, front, "starter", 4, 8, model.eos_id)  # warm both paths
        rows = []
        for n, stream in [(n, m == "stream") for m in modes for n in clients]:
            direct: list[float] = []
            through: list[float] = []
            for rep in range(reps):
                order = [("direct", ls_url, {}), ("front", ll_url, front)]
                for name, url, headers in (order if rep % 2 == 0 else order[::-1]):
                    rate = _batch(url, headers, "starter", n, max_tokens, model.eos_id,
                                  stream)
                    (direct if name == "direct" else through).append(rate)
            # Each repetition's pair ran back to back: the median of the pairs' ratios
            # cancels the drift of a shared machine better than a ratio of medians.
            pairs = [f / d for f, d in zip(through, direct, strict=True)]
            rows.append({"clients": n, "stream": stream, "direct": direct, "front": through,
                         "pairs": pairs, "ratio": statistics.median(pairs)})
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(30)
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} logical cores",
            "model": model.label, "max_tokens": max_tokens, "reps": reps,
            "threads": threads, "gpu": _gpu_name() if gpu_layers else "", "rows": rows}


def _gpu_name() -> str:
    """The GPU the upstream ran on, as nvidia-smi names it."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return "a GPU"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "a GPU"


def section(results: list[dict[str, Any]]) -> str:
    """The docs/PERFORMANCE.md section (with its markers) for each results document."""
    lines = [UP_START, "## LocalLoom in front of llama-server (upstreams)", ""]
    for res in results:
        where = (f"llama-server on the {res['gpu']} (`-ngl` all layers)" if res.get("gpu")
                 else "both on the same CPU cores, so LocalLoom's own CPU time counts "
                      "against it")
        lines += [
            f"Written by `python -m bench.upstream` on {res['date']} ({res['machine']}); "
            f"{res['model']}, llama-server `-np N -c N×{CTX_PER_SEQ} --cont-batching -t "
            f"{res['threads']}`, {where}; each client one `/v1/completions` of "
            f"{res['max_tokens']} tokens (end of text banned), {res['reps']} interleaved "
            "repetitions: medians, and the median of each back-to-back pair's ratio (the range "
            "in brackets).", "",
            "| Clients | Answers | llama-server alone (tokens/s) | through LocalLoom "
            "(tokens/s) | ratio (pairs) |",
            "| --- | --- | --- | --- | --- |"]
        for row in res["rows"]:
            how = "streamed" if row.get("stream") else "whole"
            lines.append(f"| {row['clients']} | {how} | "
                         f"{statistics.median(row['direct']):,.1f} | "
                         f"{statistics.median(row['front']):,.1f} | {row['ratio']:.2f}× "
                         f"({min(row['pairs']):.2f}–{max(row['pairs']):.2f}) |")
        if res.get("note"):  # written into the results file by hand, after the run
            lines += ["", str(res["note"])]
        lines.append("")
    lines += ["Target: ≥ 0.97× at 8 and 32 clients.", UP_END]
    return "\n".join(lines)


def write_section(doc: Path, text: str) -> None:
    """Replace the upstream section of ``doc``, or put it before '## GPU'."""
    old = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if UP_START in old and UP_END in old:
        new = old[:old.index(UP_START)] + text + old[old.index(UP_END) + len(UP_END):]
    elif "## GPU\n" in old:
        new = old.replace("## GPU\n", text + "\n\n## GPU\n", 1)
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    doc.write_text(new, encoding="utf-8")


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--model", default="starter", help="starter, tinyllama or llama2-7b")
    p.add_argument("--gpu-layers", type=int, default=0,
                   help="llama-server -ngl; above 0 the results are the GPU ones")
    p.add_argument("--modes", nargs="+", choices=("whole", "stream"), default=["whole"],
                   help="whole answers, streamed ones (every event read), or both")
    p.add_argument("--doc", type=Path, default=DOC, help="the PERFORMANCE.md to update")
    args = p.parse_args()
    res = measure(args.clients, args.reps, args.max_tokens, args.threads,
                  model_key=args.model, gpu_layers=args.gpu_layers,
                  modes=tuple(args.modes))
    out = RESULTS_CUDA if args.gpu_layers else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    text = section(saved_results())
    write_section(args.doc, text)
    print(text)


def saved_results() -> list[dict[str, Any]]:
    """Every kept run, oldest first: bench/results/upstream*.json (earlier GPU runs kept
    under another name stay in the section, so a better run does not hide a worse one)."""
    runs = [json.loads(f.read_text(encoding="utf-8"))
            for f in sorted(RESULTS.parent.glob("upstream*.json"))]
    return sorted(runs, key=lambda r: str(r["date"]))


if __name__ == "__main__":
    main()
