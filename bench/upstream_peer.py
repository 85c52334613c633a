"""Build llama-server once from the pinned llama.cpp source (the sdist of the
llama-cpp-python version LocalLoom runs), cached under ``bench/.work``.

``make llama-server`` runs this; tests/upstream/test_llama_server.py and ``python -m
bench.upstream`` use the binary. Only the llama-server target is built (with what it
links: ggml, llama, common, mtmd); a fresh clone, as in CI, pays that build once. All four
bench peers took about 41 minutes on 2 cores shared with other jobs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.native import _build, _fetch_sdist, llama_cpp_pin

__all__ = ["default_llama_server", "ensure_llama_server"]

REPO = Path(__file__).resolve().parents[1]


def default_llama_server(work: Path = REPO / "bench" / ".work") -> Path:
    """Where the build puts llama-server (``LOCALLOOM_LLAMA_SERVER`` overrides)."""
    named = os.environ.get("LOCALLOOM_LLAMA_SERVER")
    if named:
        return Path(named)
    pin = llama_cpp_pin(REPO)
    return work / f"llama_cpp_python-{pin}" / "vendor" / "llama.cpp" / "build" / "bin" \
        / "llama-server"


def ensure_llama_server(work: Path = REPO / "bench" / ".work", jobs: int = 2) -> Path:
    """Build llama-server if it is not there yet; returns its path."""
    exe = default_llama_server(work)
    if exe.exists():
        return exe
    src = _fetch_sdist(work, llama_cpp_pin(REPO), print)
    llama_dir = src / "vendor" / "llama.cpp"
    started = time.perf_counter()
    _build(llama_dir, llama_dir / "build", False, jobs, print, targets=("llama-server",))
    print(f"built llama-server in {time.perf_counter() - started:.0f} s")
    return exe


def main() -> None:
    """``python -m bench.upstream_peer [--jobs N]``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    print(ensure_llama_server(jobs=p.parse_args().jobs))


if __name__ == "__main__":
    main()
