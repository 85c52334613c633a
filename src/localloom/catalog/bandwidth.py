"""Memory read bandwidth: what bounds a CPU's decode speed, measured once and cached.

Decoding one token reads every weight once, so on a CPU tokens/s is about the memory read
bandwidth divided by the model's size (llama.cpp reaches within a few percent of it: see
docs/PERFORMANCE.md). The probe takes the dot product of a float32 buffer bigger than the
CPU caches with itself (numpy's BLAS reads it once, on all cores, at the memory's pace; a
plain ``sum`` is compute-bound at about half that), keeps the best of a few passes, and
takes well under a second; the figure is cached per machine in the cache folder.

Example::

    from localloom.catalog.bandwidth import memory_bandwidth
    print(memory_bandwidth(Settings()).gb_per_s)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from localloom._fs import write_atomic
from localloom.config import Settings, make_private_dir

__all__ = ["Bandwidth", "measure_bandwidth", "memory_bandwidth"]

_PROBE_BYTES = 256 * 2**20  # bigger than any L3 a laptop or small server has
_PASSES = 4
_MAX_AGE = _dt.timedelta(days=30)
_CACHE_NAME = "memory-bandwidth.json"


@dataclass(frozen=True)
class Bandwidth:
    """A memory read bandwidth figure and where it came from."""

    gb_per_s: float
    source: Literal["measured", "cached", "given"]
    measured_at: str = ""

    @property
    def text(self) -> str:
        """'31 GB/s memory reads (measured 2026-12-02)'."""
        how = {"measured": "measured just now", "cached": f"measured {self.measured_at[:10]}",
               "given": "as given"}[self.source]
        return f"{self.gb_per_s:.0f} GB/s memory reads ({how})"


def measure_bandwidth(size: int = _PROBE_BYTES, passes: int = _PASSES) -> float:
    """GB/s read by a dot product over ``size`` bytes; the best of ``passes``."""
    import numpy as np

    data = np.ones(size // 4, dtype=np.float32)  # written once, so every page is real
    best = 0.0
    for _ in range(passes):
        start = time.perf_counter()
        np.dot(data, data)
        elapsed = time.perf_counter() - start
        best = max(best, data.nbytes / elapsed / 1e9)
    return best


def _fingerprint() -> dict[str, Any]:
    # A new CPU, core count or RAM size (a resized VM, another machine sharing the home
    # folder) measures again.
    return {"machine": platform.machine(), "processor": platform.processor(),
            "cores": psutil.cpu_count(logical=False), "logical": os.cpu_count(),
            "ram_gib": round(psutil.virtual_memory().total / 2**30)}


def _read_cache(path: Path, fingerprint: dict[str, Any]) -> Bandwidth | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        when = _dt.datetime.fromisoformat(data["measured_at"])
        if data.get("fingerprint") != fingerprint or \
                _dt.datetime.now(_dt.timezone.utc) - when > _MAX_AGE:
            return None
        return Bandwidth(float(data["gb_per_s"]), "cached", str(data["measured_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no cache, or a damaged one: measure again


def memory_bandwidth(settings: Settings, *, refresh: bool = False) -> Bandwidth:
    """This machine's read bandwidth: cached if measured in the last 30 days, else probed
    (``refresh`` probes again, say after a busy moment gave a low figure)."""
    path = settings.cache_dir / _CACHE_NAME
    fingerprint = _fingerprint()
    if not refresh:
        cached = _read_cache(path, fingerprint)
        if cached is not None:
            return cached
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result = Bandwidth(round(measure_bandwidth(), 1), "measured", now)
    try:
        make_private_dir(path.parent)
        record = {**asdict(result), "fingerprint": fingerprint}
        write_atomic(path, json.dumps(record))
    except OSError:
        pass  # a read-only cache: the figure is still right, only not remembered
    return result
