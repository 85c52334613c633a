"""What the benchmark ran on, and how fast this machine can read memory.

Decode of one token reads every weight once, so memory read bandwidth over the bytes a
token reads is the fastest decode any program can reach here (the roofline).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Bandwidth",
    "Machine",
    "describe_machine",
    "load_average",
    "measure_bandwidth",
    "measure_gpu_bandwidth",
    "physical_cores",
]

# Sums a large array with every core: integer adds vectorize, so the loop waits on memory.
_BW_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                          return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    size_t n = (size_t)atol(argv[1]) * (1u << 20) / 8; int reps = atoi(argv[2]);
    uint64_t *a = aligned_alloc(64, n * 8); if (!a) return 1;
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = i;
    double best = 1e30; uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now(); uint64_t s = 0;
        #pragma omp parallel for reduction(+:s)
        for (size_t i = 0; i < n; i++) s += a[i];
        double dt = now() - t0; if (dt < best) best = dt; sink += s;
    }
    printf("%.6f %llu\n", n * 8.0 / best / 1e9, (unsigned long long)(sink & 1));
    return 0;
}
"""


@dataclass(frozen=True)
class Bandwidth:
    """Best memory read bandwidth seen, GB/s (10^9 bytes), and how it was measured."""

    gb_per_s: float
    method: str


@dataclass(frozen=True)
class Machine:
    """The machine the figures come from."""

    cpu: str
    physical_cores: int
    logical_cpus: int
    ram_gb: float
    os: str
    python: str
    llama_cpp_python: str
    llama_cpp_commit: str
    cpu_features: str
    gpu: str
    date: str


def physical_cores() -> int:
    """Physical cores (llama.cpp is fastest with one thread per core)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return int(n or os.cpu_count() or 1)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gb() -> float:
    try:
        import psutil

        return float(psutil.virtual_memory().total) / 1e9
    except ImportError:
        return float("nan")


def _cpu_features() -> str:
    """The SIMD features llama.cpp's CPU backend reports (what its kernels use)."""
    try:
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode(errors="replace")
    except Exception:
        return "unknown"
    words = info.replace("|", " ").replace("=", " = ").split()
    # "AVX2 = 1 | ..." -> the names whose value is 1
    found = [words[i - 1] for i in range(1, len(words) - 1)
             if words[i] == "=" and words[i + 1] == "1"]
    return ", ".join(dict.fromkeys(found)) or info.strip()[:120]


def _gpu() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "none"
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "nvidia-smi failed"
    return "; ".join(line.strip() for line in out.splitlines() if line.strip()) or "none"


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): above the core count, other
    programs were competing with the benchmark and its figures are low."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def describe_machine(llama_cpp_commit: str) -> Machine:
    """Collect the machine description printed at the top of docs/PERFORMANCE.md."""
    try:
        import llama_cpp

        lcp = str(llama_cpp.__version__)
    except ImportError:
        lcp = "not installed"
    return Machine(
        cpu=_cpu_model(),
        physical_cores=physical_cores(),
        logical_cpus=os.cpu_count() or 1,
        ram_gb=round(_ram_gb(), 1),
        os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        python=platform.python_version(),
        llama_cpp_python=lcp,
        llama_cpp_commit=llama_cpp_commit,
        cpu_features=_cpu_features(),
        gpu=_gpu(),
        date=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )


def _bandwidth_c(size_mb: int, reps: int, threads: int) -> float | None:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "bw.c", Path(tmp) / "bw"
        src.write_text(_BW_C)
        flags = ["-O3", "-march=native", "-fopenmp"]
        built = subprocess.run([cc, *flags, str(src), "-o", str(exe)], capture_output=True)
        if built.returncode != 0:
            return None
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="spread")
        run = subprocess.run([str(exe), str(size_mb), str(reps)], capture_output=True,
                             text=True, env=env, timeout=300)
        if run.returncode != 0:
            return None
        return float(run.stdout.split()[0])


def _bandwidth_numpy(size_mb: int, reps: int, threads: int) -> float:
    import numpy as np

    a = np.ones(size_mb * (1 << 20) // 4, dtype=np.float32)
    parts = np.array_split(a, threads)
    best = float("inf")
    # np.dot releases the GIL and streams its inputs; one thread per core reads in parallel.
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(reps):
            t0 = time.perf_counter()
            list(pool.map(lambda p: float(np.dot(p, p)), parts))
            best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


def measure_bandwidth(size_mb: int = 1024, reps: int = 8, threads: int | None = None) -> Bandwidth:
    """Best-of-`reps` read bandwidth over a `size_mb` array (far larger than any cache)."""
    threads = threads or physical_cores()
    c = _bandwidth_c(size_mb, reps, threads)
    n = _bandwidth_numpy(size_mb, max(3, reps // 2), threads)
    if c is not None and c >= n:
        return Bandwidth(c, f"C sum over {size_mb} MiB, {threads} threads, best of {reps}")
    return Bandwidth(n, f"numpy dot over {size_mb} MiB, {threads} threads, best of {reps}")


_GPU_BW_PY = """
import sys, torch
size_mb, reps = int(sys.argv[1]), int(sys.argv[2])
if not torch.cuda.is_available():
    sys.exit(3)
x = torch.ones(size_mb * (1 << 20) // 4, dtype=torch.float32, device="cuda")
x.sum(); torch.cuda.synchronize()
best = float("inf")
for _ in range(reps):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(); x.sum(); end.record(); torch.cuda.synchronize()
    best = min(best, start.elapsed_time(end) / 1000)
print(x.numel() * 4 / best / 1e9, torch.cuda.get_device_name(0))
"""


def measure_gpu_bandwidth(size_mb: int = 4096, reps: int = 20) -> Bandwidth | None:
    """Read bandwidth of GPU memory (a large sum through PyTorch), or None without CUDA.

    Runs in a child process: PyTorch's bundled CUDA libraries and llama.cpp's, in one
    process, aborted with "free(): invalid pointer" on the H100 image.
    """
    try:
        run = subprocess.run([sys.executable, "-c", _GPU_BW_PY, str(size_mb), str(reps)],
                             capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return None
    if run.returncode != 0 or not run.stdout.strip():
        return None
    gbps, name = run.stdout.strip().split(" ", 1)
    return Bandwidth(float(gbps), f"torch sum over {size_mb} MiB on {name}, best of {reps}")
