"""How llama.cpp is configured for a model, and the safer configurations to fall back to.

llama.cpp picks CPU "extra buffer types" for weights when it loads a model: Intel's AMX
kernels first (Xeon Sapphire Rapids and later), then its repacking kernels (``CPU_REPACK``),
then plain buffers. Some of these crash on some files: AMX segfaults on Q4_K tensors
(upstream llama.cpp issue #20824), and a GPU driver can abort. LocalLoom therefore tries a
model in a child process (:mod:`localloom.engine.probe`) with each :class:`BackendConfig`
of :func:`configs_to_try` in turn, riskiest part off first, and loads it with the first
one that ran.

``LOCALLOOM_EXTRA_BUFFERS`` forces a choice: ``auto`` (try in order), ``on`` (llama.cpp's
default, AMX included), ``no-amx`` (repacking kept, AMX off) or ``off`` (no extra buffers).

Example::

    from localloom.engine.backend import configs_to_try
    for config in configs_to_try("auto", gpu_layers=0):
        print(config.name, config.describe())
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import platform
import re
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "AMX_ISSUE",
    "BackendConfig",
    "ExtraBuffers",
    "TensorOverrides",
    "apply_config",
    "backend_devices",
    "configs_to_try",
    "cpu_extra_buffer_types",
    "cpu_has_amx",
    "crash_now",
    "machine_fingerprint",
    "simulated_crash",
]

ExtraBuffers = Literal["auto", "on", "no-amx", "off"]
AMX_ISSUE = "https://github.com/ggml-org/llama.cpp/issues/20824"
# Parts a test can declare broken (LOCALLOOM_SIMULATE_CRASH): a load using one crashes.
SIMULATED_PARTS = ("amx", "extra-buffers", "repack", "gpu", "all")
# Weight matrices (the only tensors CPU_REPACK takes): attention, feed-forward, output.
_MATMUL = re.compile(r"^(blk\.\d+\.(attn_(q|k|v|qkv|output)|ffn_(gate|up|down))|output)"
                     r"\.weight$")
# x86 rules of ggml_repack_get_optimal_repack_type (llama.cpp 0.3.36's repack.cpp): the
# types it repacks with AVX2 (AVX-512 for Q2_K) when the row count is a multiple of 8.
_REPACK_AVX2 = frozenset({"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"})
_REPACK_AVX512 = frozenset({"Q2_K"})


@dataclass(frozen=True)
class BackendConfig:
    """One way to load a model: which extra buffer types, and how many layers on a GPU.

    ``repack_only`` turns llama.cpp's extra buffers off and puts the weights the repacking
    kernels can take into ``CPU_REPACK`` explicitly (tensor_buft_overrides): the AMX buffer
    type is skipped, the repacked speed is kept.
    """

    name: str
    extra_buffers: bool
    repack_only: bool
    gpu_layers: int

    def describe(self) -> str:
        """A line for doctor and logs."""
        parts = {
            "default": "llama.cpp's defaults (extra buffer types incl. AMX where present)",
            "no-amx": "AMX buffer type off, CPU repacking kept",
            "no-extra-buffers": "extra buffer types off (no AMX, no repacking)",
            "cpu-only": "extra buffer types off and no GPU offload",
        }
        gpu = f", {self.gpu_layers} GPU layers" if self.gpu_layers else ""
        return parts.get(self.name, self.name) + (gpu if self.name != "cpu-only" else "")

    def to_json(self) -> dict[str, Any]:
        """For the verdict cache and the probe child's argument."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackendConfig:
        """Inverse of :meth:`to_json`."""
        return cls(str(data["name"]), bool(data["extra_buffers"]), bool(data["repack_only"]),
                   int(data["gpu_layers"]))

    def uses(self, part: str, *, amx_present: bool) -> bool:
        """Whether loading with this config exercises ``part`` (one of SIMULATED_PARTS)."""
        if part == "amx":
            return self.extra_buffers and amx_present
        if part == "extra-buffers":
            return self.extra_buffers
        if part == "repack":
            return self.extra_buffers or self.repack_only
        if part == "gpu":
            return self.gpu_layers != 0
        return part == "all"


DEFAULT_CONFIG = BackendConfig("default", True, False, 0)


def configs_to_try(mode: ExtraBuffers, *, gpu_layers: int,
                   amx_present: bool = False) -> list[BackendConfig]:
    """The configurations to try, in order; a forced ``mode`` gives exactly one."""
    default = BackendConfig("default", True, False, gpu_layers)
    no_amx = BackendConfig("no-amx", False, True, gpu_layers)
    no_extra = BackendConfig("no-extra-buffers", False, False, gpu_layers)
    if mode == "on":
        return [default]
    if mode == "no-amx":
        return [no_amx]
    if mode == "off":
        return [no_extra]
    ladder = [default, *([no_amx] if amx_present else []), no_extra]
    if gpu_layers != 0:
        ladder.append(BackendConfig("cpu-only", False, False, 0))
    return ladder


def simulated_crash(config: BackendConfig, simulate: str | None, *,
                    amx_present: bool) -> str | None:
    """The simulated broken part this config would hit (``LOCALLOOM_SIMULATE_CRASH``)."""
    for part in (simulate or "").replace(" ", "").split(","):
        if part and config.uses(part, amx_present=amx_present):
            return part
    return None


def crash_now() -> None:
    """A real segmentation fault (or access violation): what the simulated part does."""
    ctypes.string_at(0)


# --------------------------------------------------------------------------- llama.cpp side


# Facts of this process's llama.cpp build and machine: looked up once (every load asks).
@functools.cache
def _ggml() -> Any:
    from llama_cpp import _ggml as ggml_module

    lib = ggml_module.libggml
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    lib.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.ggml_backend_buft_name.restype = ctypes.c_char_p
    lib.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
    return lib


@functools.cache
def cpu_extra_buffer_types() -> dict[str, int]:
    """The CPU backend's extra buffer types by name (``AMX``, ``CPU_REPACK`` ...)."""
    try:
        lib = _ggml()
        dev = lib.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
        if not dev:
            return {}
        reg = lib.ggml_backend_dev_backend_reg(dev)
        fn = lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
    except (AttributeError, OSError, ImportError):
        return {}
    if not fn:
        return {}
    get = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(fn)
    found: dict[str, int] = {}
    array = get(dev)
    i = 0
    while array and array[i]:
        found[lib.ggml_backend_buft_name(array[i]).decode("utf-8", "replace")] = array[i]
        i += 1
    return found


class _Override(ctypes.Structure):
    # struct llama_model_tensor_buft_override { const char * pattern;
    #                                           ggml_backend_buffer_type_t buft; }
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _repackable(shapes: dict[str, tuple[str, tuple[int, ...]]]) -> list[str]:
    """Weights CPU_REPACK takes on this CPU (x86 only: AMX exists only there)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x86"):
        return []
    lib = _ggml()
    types: set[str] = set()
    if lib.ggml_cpu_has_avx2():
        types |= _REPACK_AVX2
    if lib.ggml_cpu_has_avx512():
        types |= _REPACK_AVX512
    return [name for name, (tname, dims) in shapes.items()
            if tname in types and len(dims) == 2 and dims[1] % 8 == 0 and _MATMUL.match(name)]


def cpu_has_amx() -> bool:
    """Whether llama.cpp would use the AMX buffer type on this machine."""
    return "AMX" in cpu_extra_buffer_types()


class TensorOverrides:
    """``tensor_buft_overrides`` for a :class:`BackendConfig`, kept alive while it loads."""

    def __init__(self, config: BackendConfig, path: Path) -> None:
        self.array: Any = None
        self.count = 0
        if not config.repack_only:
            return
        repack = cpu_extra_buffer_types().get("CPU_REPACK")
        if repack is None:
            return
        from localloom.gguf_header import read_gguf_header

        names = _repackable(read_gguf_header(path).tensor_shapes)
        if not names:
            return
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        self.array = (_Override * 2)(_Override(pattern.encode(), repack), _Override(None, None))
        self.count = len(names)

    def apply(self, params: Any) -> None:
        """Set the overrides on a ``llama_model_params`` (a no-op when there are none)."""
        if self.array is not None:
            params.tensor_buft_overrides = ctypes.cast(self.array, ctypes.c_void_p).value


def apply_config(params: Any, config: BackendConfig, path: Path) -> TensorOverrides:
    """Set ``config`` on a ``llama_model_params``; keep the result until the load returns."""
    params.n_gpu_layers = config.gpu_layers
    params.use_extra_bufts = config.extra_buffers
    overrides = TensorOverrides(config, path)
    overrides.apply(params)
    return overrides


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


@functools.cache
def backend_devices() -> tuple[str, ...]:
    """llama.cpp's devices ("CPU: AMD EPYC ...", "CUDA0: NVIDIA H200"), in its order."""
    try:
        lib = _ggml()
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        devices = []
        for i in range(int(lib.ggml_backend_dev_count())):
            dev = lib.ggml_backend_dev_get(i)
            devices.append(f"{lib.ggml_backend_dev_name(dev).decode('utf-8', 'replace')}: "
                           f"{lib.ggml_backend_dev_description(dev).decode('utf-8', 'replace')}")
        return tuple(devices)
    except (AttributeError, OSError, ImportError):
        return ()


@functools.cache
def machine_fingerprint() -> str:
    """A short hash of what a crash verdict depends on besides the file: the llama.cpp
    build, the CPU's flags and the devices (GPUs)."""
    import llama_cpp

    try:
        version = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        version = "unknown"
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    lib = Path(llama_cpp.__file__).parent / "lib"
    build = ",".join(f"{p.name}:{p.stat().st_size}" for p in sorted(lib.glob("*ggml*")))
    raw = "|".join((version, info, build, _cpu_flags(), ";".join(backend_devices())))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]
