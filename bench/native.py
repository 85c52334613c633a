"""The native peers, built from the llama.cpp source that llama-cpp-python pins.

``pip download llama-cpp-python==<pin>`` fetches the sdist (PyPI has no wheels of it); its
``vendor/llama.cpp`` is exactly the code LocalLoom runs, so ``llama-bench``,
``llama-server`` and ``llama-batched-bench`` built from it are a like-for-like baseline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BatchedPoint",
    "LlamaBenchResult",
    "Peers",
    "ensure_peers",
    "llama_cpp_pin",
    "run_batched_bench",
    "run_llama_bench",
]

PEER_TARGETS = ("llama-bench", "llama-server", "llama-batched-bench", "llama-quantize")


@dataclass(frozen=True)
class Peers:
    """Paths of the built peer programs and the llama.cpp commit they come from."""

    bin_dir: Path
    commit: str
    cuda: bool

    def exe(self, name: str) -> Path:
        """Path of one peer program."""
        suffix = ".exe" if os.name == "nt" else ""
        return self.bin_dir / f"{name}{suffix}"


def llama_cpp_pin(repo_root: Path) -> str:
    """The llama-cpp-python version LocalLoom runs (installed, else pinned in pyproject)."""
    try:
        import llama_cpp

        return str(llama_cpp.__version__)
    except ImportError:
        text = (repo_root / "pyproject.toml").read_text()
        m = re.search(r"llama-cpp-python==([0-9][^\"',\s]*)", text)
        if m is None:
            raise RuntimeError("pyproject.toml pins no llama-cpp-python version") from None
        return m.group(1)


def _fetch_sdist(work: Path, pin: str, log: Callable[[str], None]) -> Path:
    src = work / f"llama_cpp_python-{pin}"
    if (src / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        return src
    archives = sorted(work.glob(f"llama_cpp_python-{pin}.tar.gz"))
    if not archives:
        log(f"  pip download llama-cpp-python=={pin} (sdist) ...")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", f"llama-cpp-python=={pin}", "-d", str(work)], check=True)
        archives = sorted(work.glob(f"llama_cpp_python-{pin}.tar.gz"))
    if not archives:
        raise RuntimeError(f"pip download gave no llama_cpp_python-{pin}.tar.gz in {work}")
    log(f"  extracting {archives[0].name} ...")
    with tarfile.open(archives[0]) as tar:
        if sys.version_info >= (3, 12):
            tar.extractall(work, filter="data")
        else:
            tar.extractall(work)
    return src


def _commit(llama_dir: Path) -> str:
    stamp = llama_dir / "LLAMA_CPP_COMMIT"  # written where .git was stripped (GPU runs)
    if stamp.exists():
        return stamp.read_text().strip()
    try:
        out = subprocess.run(["git", "-C", str(llama_dir), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _build(llama_dir: Path, build_dir: Path, cuda: bool, jobs: int,
           log: Callable[[str], None], targets: tuple[str, ...] = PEER_TARGETS) -> None:
    if not (build_dir / "CMakeCache.txt").exists():
        # An existing tree keeps its own generator and flags: reconfiguring with another
        # generator fails, and the flags already match (same script made it).
        args = ["cmake", "-S", str(llama_dir), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                "-DLLAMA_CURL=OFF"]
        if shutil.which("ninja"):
            args += ["-G", "Ninja"]
        if cuda:
            args += ["-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90"]
        log("  " + " ".join(args))
        subprocess.run(args, check=True)
    t0 = time.perf_counter()
    cmd = ["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(jobs),
           "--target", *targets]
    log("  " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    log(f"  built the native peers in {time.perf_counter() - t0:.0f} s")


def ensure_peers(work: Path, repo_root: Path, *, cuda: bool, jobs: int,
                 log: Callable[[str], None] = print) -> Peers:
    """Build (or find) the peers; ``LOCALLOOM_BENCH_PEERS`` names a folder of prebuilt ones."""
    prebuilt = os.environ.get("LOCALLOOM_BENCH_PEERS")
    pin = llama_cpp_pin(repo_root)
    if prebuilt:
        bin_dir = Path(prebuilt)
        llama_dir = work / f"llama_cpp_python-{pin}" / "vendor" / "llama.cpp"
        commit = _commit(llama_dir) if llama_dir.exists() else "unknown"
        peers = Peers(bin_dir, commit, cuda)
    else:
        src = _fetch_sdist(work, pin, log)
        llama_dir = src / "vendor" / "llama.cpp"
        build_dir = llama_dir / ("build-cuda" if cuda else "build")
        peers = Peers(build_dir / "bin", _commit(llama_dir), cuda)
        if not all(peers.exe(t).exists() for t in PEER_TARGETS[:3]):
            _build(llama_dir, build_dir, cuda, jobs, log)
    # A GPU run measures no HTTP servers, so its prebuilt peers may lack llama-server.
    required = ("llama-bench", "llama-batched-bench") if cuda else PEER_TARGETS[:3]
    missing = [t for t in required if not peers.exe(t).exists()]
    if missing:
        raise RuntimeError(f"peer programs missing in {peers.bin_dir}: {', '.join(missing)}")
    return peers


@dataclass(frozen=True)
class LlamaBenchResult:
    """llama-bench's mean prefill and decode rates (tokens/s) and its settings."""

    pp_tokens: int
    pp_ts: float
    pp_sd: float
    tg_tokens: int
    tg_ts: float
    tg_sd: float
    threads: int
    n_gpu_layers: int
    flash_attn: str
    build: str
    backends: str


def run_llama_bench(peers: Peers, model: Path, *, threads: int, n_prompt: int, n_gen: int,
                    reps: int, n_gpu_layers: int = 0, timeout: float = 900) -> LlamaBenchResult:
    """Run ``llama-bench -p N -n M -t T -r R -o json`` and parse its records."""
    cmd = [str(peers.exe("llama-bench")), "-m", str(model), "-p", str(n_prompt), "-n",
           str(n_gen), "-t", str(threads), "-r", str(reps), "-ngl", str(n_gpu_layers),
           "-o", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({out.returncode}): {out.stderr[-2000:]}")
    records = json.loads(out.stdout)
    pp = next(r for r in records if r["n_prompt"] > 0 and r["n_gen"] == 0)
    tg = next(r for r in records if r["n_gen"] > 0 and r["n_prompt"] == 0)
    return LlamaBenchResult(
        pp_tokens=n_prompt, pp_ts=float(pp["avg_ts"]), pp_sd=float(pp["stddev_ts"]),
        tg_tokens=n_gen, tg_ts=float(tg["avg_ts"]), tg_sd=float(tg["stddev_ts"]),
        threads=int(tg["n_threads"]), n_gpu_layers=int(tg["n_gpu_layers"]),
        flash_attn=str(tg.get("flash_attn", "")),
        build=f"{tg.get('build_commit', '?')} ({tg.get('build_number', '?')})",
        backends=str(tg.get("backends", "")),
    )


@dataclass(frozen=True)
class BatchedPoint:
    """One row of llama-batched-bench: `pl` sequences, aggregate decode tokens/s."""

    pl: int
    pp: int
    tg: int
    speed_pp: float
    speed_tg: float
    speed: float


def run_batched_bench(peers: Peers, model: Path, *, threads: int, n_pp: int, n_tg: int,
                      levels: list[int], n_gpu_layers: int = 0,
                      timeout: float = 900) -> list[BatchedPoint]:
    """Run ``llama-batched-bench`` (separate prompts per sequence) and parse its jsonl."""
    n_ctx = max(levels) * (n_pp + n_tg) + 64
    cmd = [str(peers.exe("llama-batched-bench")), "-m", str(model), "-c", str(n_ctx),
           "-b", "2048", "-ub", "512", "-npp", str(n_pp), "-ntg", str(n_tg),
           "-npl", ",".join(map(str, levels)), "-t", str(threads), "-ngl", str(n_gpu_layers),
           "--output-format", "jsonl"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"llama-batched-bench failed: {out.stderr[-2000:]}")
    points = []
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        line = line.strip()
        if line.startswith("{") and '"speed_tg"' in line:
            r = json.loads(line)
            points.append(BatchedPoint(pl=int(r["pl"]), pp=int(r["pp"]), tg=int(r["tg"]),
                                       speed_pp=float(r["speed_pp"]),
                                       speed_tg=float(r["speed_tg"]), speed=float(r["speed"])))
    if not points:
        raise RuntimeError(f"llama-batched-bench printed no results: {out.stdout[-2000:]}")
    return points
