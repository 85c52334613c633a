"""Hardware fit: what this machine has, whether each model fits, which one to use.

RAM and VRAM are in GiB (what "an 8 GB laptop" has). The catalog's RAM figures are the
model's needs at the default context; a fit leaves a fifth of RAM to the OS and other
programs.

Example::

    from localloom.catalog import Catalog, detect_hardware, fit, recommend
    hw = detect_hardware()
    catalog = Catalog()
    print(fit(catalog.get("starter"), hw).status)      # "fits"
    print(recommend(catalog, hw).reason)
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import psutil

from localloom.catalog.entry import ModelEntry, QualityTier

__all__ = [
    "GPU",
    "MIN_TOKENS_PER_S",
    "Fit",
    "FitStatus",
    "Hardware",
    "HasEntries",
    "Recommendation",
    "detect_hardware",
    "estimate_tokens_per_s",
    "fit",
    "format_gb_range",
    "recommend",
]

GIB = 1024**3
FitStatus = Literal["fits", "tight", "does_not_fit"]
_RESERVE = 0.2  # of total RAM, for the OS and other programs
_VRAM_USABLE = 0.9  # the display and the CUDA context take some
_QUALITY_RANK: dict[QualityTier, int] = {"demo": 0, "basic": 1, "good": 2, "high": 3}
# Decode reads every weight once per token; llama.cpp gets close to the memory's read rate
# (48.6 tok/s for a 0.64 GB model with ~31 GB/s measured: docs/PERFORMANCE.md). The rest
# goes to the KV cache, dequantizing and the other programs.
_DECODE_EFFICIENCY = 0.9
MIN_TOKENS_PER_S = 15.0  # a 300-token answer in 20 s; slower feels like waiting


@dataclass(frozen=True)
class GPU:
    """One GPU llama.cpp may offload to."""

    name: str
    total_gb: float
    free_gb: float | None = None


@dataclass(frozen=True)
class Hardware:
    """What this machine offers a model; build it yourself to ask "what if"."""

    total_ram_gb: float
    available_ram_gb: float
    gpu_offload: bool = False
    gpus: tuple[GPU, ...] = ()
    unified_memory: bool = False  # Apple Silicon: the GPU shares RAM
    physical_cores: int | None = None
    logical_cores: int | None = None
    system: str = field(default_factory=platform.system)
    # GB/s of memory reads (catalog.bandwidth measures it); None: speed is not judged.
    memory_bandwidth_gbs: float | None = None

    @property
    def vram_total_gb(self) -> float | None:
        """Dedicated GPU memory llama.cpp can use (None: none known or none usable)."""
        if self.unified_memory:
            return self.total_ram_gb if self.gpu_offload else None
        if not self.gpu_offload or not self.gpus:
            return None
        return sum(g.total_gb for g in self.gpus)


@dataclass(frozen=True)
class Fit:
    """Whether a model fits this machine, where it would run, and why."""

    status: FitStatus
    reason: str
    device: Literal["gpu", "cpu"] = "cpu"

    @property
    def label(self) -> str:
        """Words for a table: "fits", "tight", "does not fit"."""
        return self.status.replace("_", " ")


@runtime_checkable
class HasEntries(Protocol):
    """Anything with ``entries()``, such as :class:`~localloom.catalog.Catalog`."""

    def entries(self) -> list[ModelEntry]:
        """Every entry."""


@dataclass(frozen=True)
class Recommendation:
    """The model to use on this machine, its fit, and why it was chosen."""

    entry: ModelEntry
    fit: Fit
    reason: str
    tokens_per_s: float | None = None  # estimated decode speed (None: not judged)


def estimate_tokens_per_s(entry: ModelEntry, hw: Hardware) -> float | None:
    """Estimated decode tokens/s of `entry` on `hw`'s CPU memory, or None if not judged.

    A model that runs on a dedicated GPU is not judged: GPU memory reads are tens of times
    faster than the CPU's, so speed is not what limits the choice there.
    """
    if hw.memory_bandwidth_gbs is None or entry.download_size <= 0:
        return None
    if fit(entry, hw).device == "gpu" and not hw.unified_memory:
        return None
    return hw.memory_bandwidth_gbs * 1e9 * _DECODE_EFFICIENCY / entry.download_size


def _gpu_offload_supported() -> bool:
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # a native library can fail to load in many ways: no GPU backend
        return False


def _nvidia_gpus() -> tuple[GPU, ...]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    cmd = [exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        try:
            gpus.append(GPU(parts[0], float(parts[1]) / 1024, float(parts[2]) / 1024))
        except (IndexError, ValueError):
            continue  # "[N/A]" and the like: skip the card rather than guess
    return tuple(gpus)


def detect_hardware() -> Hardware:
    """Measure this machine: RAM (psutil), llama.cpp GPU offload, NVIDIA VRAM, CPU cores."""
    mem = psutil.virtual_memory()
    system = platform.system()
    unified = system == "Darwin" and platform.machine() in ("arm64", "aarch64")
    return Hardware(
        total_ram_gb=mem.total / GIB,
        available_ram_gb=mem.available / GIB,
        gpu_offload=_gpu_offload_supported(),
        gpus=() if unified else _nvidia_gpus(),
        unified_memory=unified,
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=os.cpu_count(),
        system=system,
    )


def _num(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def format_gb_range(lo: float, hi: float) -> str:
    """'1–2 GB', or '4 GB' when both ends agree."""
    return f"{_num(lo)} GB" if _num(lo) == _num(hi) else f"{_num(lo)}–{_num(hi)} GB"


def fit(entry: ModelEntry, hw: Hardware) -> Fit:
    """Classify `entry` on `hw`: fits / tight / does_not_fit, with the reason."""
    need = format_gb_range(entry.ram_min_gb, entry.ram_max_gb)
    vram = hw.vram_total_gb
    if vram is not None and not hw.unified_memory and entry.ram_max_gb <= vram * _VRAM_USABLE:
        return Fit("fits", f"needs {need}; fits in GPU memory ({_num(vram)} GB)", "gpu")
    device: Literal["gpu", "cpu"] = "gpu" if hw.unified_memory and hw.gpu_offload else "cpu"
    total, free = hw.total_ram_gb, hw.available_ram_gb
    usable = total * (1 - _RESERVE)
    if entry.ram_max_gb <= usable and entry.ram_max_gb <= free:
        return Fit("fits", f"needs {need}; {_num(free)} of {_num(total)} GB RAM free", device)
    if entry.ram_max_gb <= usable:
        return Fit("tight", f"needs {need}; only {_num(free)} GB RAM free now: close other "
                   "programs first", device)
    if entry.ram_min_gb <= total:
        return Fit("tight", f"needs {need}; {_num(total)} GB RAM leaves little for other "
                   "programs: expect swapping, or pick a smaller model", device)
    return Fit("does_not_fit", f"needs {need}, but this machine has {_num(total)} GB RAM: "
               "pick a smaller model", device)


def _rank(entry: ModelEntry) -> tuple[int, int, float]:
    # Quality first; among equals, newer models, then the bigger (more capable) one.
    return (_QUALITY_RANK[entry.quality], int("current" in entry.tags), entry.ram_max_gb)


def _speed_text(speed: float | None, hw: Hardware) -> str:
    if speed is None:
        return ""
    return (f" About {speed:.0f} tokens/s estimated (model size against "
            f"{hw.memory_bandwidth_gbs:.0f} GB/s of memory reads).")


def _pick(group: list[tuple[ModelEntry, Fit]], hw: Hardware, min_tokens_per_s: float,
          wanted: str) -> Recommendation:
    """The best-quality model of `group` fast enough here, else the fastest of them."""
    speeds = {e.id: estimate_tokens_per_s(e, hw) for e, _ in group}
    quick = [(e, f) for e, f in group if (speeds[e.id] or min_tokens_per_s) >= min_tokens_per_s]
    if quick:
        entry, f = quick[0]
        lead = ("the highest-quality model that fits this machine" if wanted == "fits"
                else "nothing fits comfortably; this is the best that may run")
        if len(quick) < len(group):
            lead += f" and writes at least {min_tokens_per_s:.0f} tokens/s"
    else:
        entry, f = max(group, key=lambda pair: speeds[pair[0].id] or 0.0)
        lead = (f"no model that fits reaches {min_tokens_per_s:.0f} tokens/s here; "
                "this is the fastest")
    speed = speeds[entry.id]
    return Recommendation(entry, f, f"{entry.display_name}: {lead} ({f.reason}). Quality "
                          f"{entry.quality}, speed {entry.speed}.{_speed_text(speed, hw)}", speed)


def recommend(catalog: Iterable[ModelEntry] | HasEntries, hw: Hardware, *,
              min_tokens_per_s: float = MIN_TOKENS_PER_S) -> Recommendation:
    """The best-quality built-in chat model that fits `hw` and is fast enough, or the
    starter if none fits.

    `catalog` is a :class:`~localloom.catalog.Catalog` or any iterable of entries. User
    models are not recommended: their quality is whatever the user says. When
    ``hw.memory_bandwidth_gbs`` is known, a model whose estimated decode speed is under
    `min_tokens_per_s` is passed over for a faster one (the fastest, if none is fast enough).
    """
    entries = catalog.entries() if isinstance(catalog, HasEntries) else list(catalog)
    builtin = [e for e in entries if e.origin == "builtin"]
    chat = sorted((e for e in builtin if e.prompt_style == "chat"), key=_rank, reverse=True)
    fits = [(e, fit(e, hw)) for e in chat]
    for wanted in ("fits", "tight"):
        group = [(e, f) for e, f in fits if f.status == wanted]
        if group:
            return _pick(group, hw, min_tokens_per_s, wanted)
    starters = [e for e in builtin if "starter" in e.tags] or builtin
    if not starters:
        raise ValueError("recommend() needs at least one built-in entry")
    starter = min(starters, key=lambda e: e.ram_max_gb)
    f = fit(starter, hw)
    return Recommendation(starter, f, (
        f"No chat model fits this machine ({_num(hw.total_ram_gb)} GB RAM). "
        f"{starter.display_name} runs almost anywhere ({f.reason}), but it is a tiny base "
        "model for demos and tests, not for quality."))
