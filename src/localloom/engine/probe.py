"""Check a model file before LocalLoom loads it: header in-process, weights in a throwaway process.

GGUF files come from strangers, and llama.cpp parses them in C++: a crafted or damaged file
can crash the process that loads it. So a file is first read by LocalLoom's own bounded
header reader, then loaded by llama.cpp in a separate Python process that does what a real
session does, small: two sequences, a batched prefill, decode steps of both, on the
configured threads and GPU offload. Backends crash too (llama.cpp's AMX kernels on Q4_K
tensors, upstream issue #20824): when the trial crashes, aborts or hangs, it runs again with
the risky parts off (AMX, then every extra buffer type, then the GPU; see
:mod:`localloom.engine.backend`), and the engine loads the model with the first config that
worked. When none works the user gets :class:`ModelLoadError` with the reason, and LocalLoom
keeps running. The verdict is cached per file (path, size, mtime), llama.cpp build, CPU
flags, GPUs, threads and offload under ``Settings.cache_dir``, so a model is probed once.

Example::

    from localloom.engine.probe import probe_model
    result = probe_model("tinyllama-1.1b-chat-v1.0.Q4_0.gguf")   # or ModelLoadError
    print(result.architecture, result.config.name, result.fallback_from)

From a shell, ``python -m localloom.engine.probe FILE.gguf`` runs the trial load itself and
prints its JSON verdict.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout

from localloom._fs import write_atomic
from localloom.config import Settings, make_private_dir
from localloom.engine.backend import (
    AMX_ISSUE,
    DEFAULT_CONFIG,
    BackendConfig,
    ExtraBuffers,
    configs_to_try,
    cpu_has_amx,
    machine_fingerprint,
)
from localloom.errors import ModelLoadError
from localloom.gguf_header import GGUFFormatError, GGUFInfo, read_gguf_header

__all__ = ["DEFAULT_PROBE_CTX", "ProbeResult", "TrialOutcome", "TrialSpec", "probe_model",
           "trial_load"]

DEFAULT_PROBE_CTX = 64
_TRIAL_PROMPT = 24  # tokens of the first sequence's prompt in the trial
_TRIAL_STEPS = 4  # decode steps of both sequences after the prefill
_REFUSED = 17  # exit code of a child that ran fine and found the file unusable
_SETUP_FAILED = 18  # exit code of a child that could not even start llama.cpp
_MARK = "LOCALLOOM_PROBE "
_TAIL = 16 * 1024  # bytes of the child's output kept; llama.cpp can log a line per token
_CACHE_FILE = "probe-verdicts.json"
_CACHE_ENTRIES = 512
# Runs this file as a script without importing the engine package (3x faster to start).
_BOOTSTRAP = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], " \
             "run_name='__main__')"
# Build paths in assert messages ("/tmp/pip-install-x/.../llama-model.cpp:1328") say nothing.
_SOURCE_PATH = re.compile(r"\S*[/\\]([\w.-]+\.(?:c|cc|cpp|h|hpp):\d+)")
_WINDOWS_CRASHES = {0xC0000005: "access violation", 0xC00000FD: "stack overflow",
                    0xC0000409: "stack buffer overrun", 0xC000001D: "illegal instruction"}

Status = Literal["ok", "refused", "crashed", "timeout", "error"]
_log = logging.getLogger("localloom")


@dataclass(frozen=True)
class TrialOutcome:
    """What one trial load in a child process did.

    ``status`` is "ok", "refused" (llama.cpp returned an error), "crashed" (the child died
    from a signal or an abnormal exit), "timeout" or "error" (the child could not start).
    """

    status: Status
    detail: str
    returncode: int | None
    seconds: float
    stage: str = ""  # where a refusal happened: load, vocab, context, decode

    @property
    def blames_file(self) -> bool:
        """A refusal while reading the file: no other backend config will load it."""
        return self.status == "refused" and self.stage in ("load", "vocab")


@dataclass(frozen=True)
class ProbeResult:
    """A file that passed both checks."""

    path: Path
    file_size: int
    architecture: str | None
    n_params: int
    cached: bool
    seconds: float
    config: BackendConfig = DEFAULT_CONFIG
    fallback_from: tuple[str, ...] = ()  # the configs that failed first, with what they did

    @property
    def fallback(self) -> bool:
        """Whether a safer config than llama.cpp's default is in use."""
        return bool(self.fallback_from)


def _tail(path: Path) -> str:
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL))
        return f.read().decode("utf-8", errors="replace")


def _reason(stderr: str, *, last_words: bool = True) -> str:
    """llama.cpp's most telling line: its load error, an assert, or the last words."""
    lines = [_SOURCE_PATH.sub(r"\1", ln.strip()) for ln in stderr.splitlines() if ln.strip()]
    for marker in ("error loading model:", "GGML_ASSERT", "terminate called", "error"):
        hits = [ln for ln in lines if marker in ln]
        if hits:
            return hits[-1][:400]
    return " | ".join(ln[:200] for ln in lines[-2:]) if last_words else ""


def _crash_name(rc: int) -> str:
    if rc < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-rc).name
        return f"signal {-rc}"
    return _WINDOWS_CRASHES.get(rc & 0xFFFF_FFFF, f"exit code {rc}")


def child_command(script: Path, *args: str) -> list[str]:
    """The command that runs ``script`` as ``__main__`` in a fresh Python (the probe and
    the grammar checker's children)."""
    return [sys.executable, "-c", _BOOTSTRAP, str(script.resolve()), *args]


def child_env(threads: int) -> dict[str, str]:
    """The environment of a llama.cpp child: this package importable, ``threads`` OpenMP
    threads, and no gdb backtrace on abort."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding `localloom`
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = str(max(1, threads))
    # ggml's abort handler attaches gdb to print a backtrace where gdb is installed; with
    # several compute threads that can hang the child until the timeout instead of dying.
    env["GGML_NO_BACKTRACE"] = "1"
    return env


@dataclass(frozen=True)
class TrialSpec:
    """How the child runs the trial: a backend config, threads, and the test switch."""

    config: BackendConfig
    threads: int = 1
    simulate: str | None = None  # LOCALLOOM_SIMULATE_CRASH: parts that crash when used
    amx_present: bool = False

    def to_json(self) -> str:
        """The child's third argument."""
        return json.dumps({"config": self.config.to_json(), "threads": self.threads,
                           "simulate": self.simulate, "amx": self.amx_present})


_PLAIN = TrialSpec(DEFAULT_CONFIG)


def trial_load(path: str | os.PathLike[str], *, timeout: float = 120.0,
               n_ctx: int = DEFAULT_PROBE_CTX, spec: TrialSpec = _PLAIN) -> TrialOutcome:
    """Load ``path`` with llama.cpp in a child process and report what happened.

    No header check runs first (:func:`probe_model` does that): this is the raw verdict of
    llama.cpp, and whatever it does to the child, this process is unaffected. ``n_ctx`` > 0
    also builds a two-sequence context and runs a batched prefill and decode steps of both
    sequences with ``spec``'s threads and backend config, as a real session does.
    """
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="localloom-probe-") as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        cmd = child_command(Path(__file__), str(Path(path).resolve()), str(n_ctx),
                            spec.to_json())
        with out.open("wb") as fo, err.open("wb") as fe:
            try:
                rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                    cwd=tmp, env=child_env(spec.threads), timeout=timeout,
                                    check=False).returncode
            except subprocess.TimeoutExpired:
                return TrialOutcome("timeout", f"no answer within {timeout:.0f} s", None,
                                    time.monotonic() - start)
            except OSError as exc:
                return TrialOutcome("error", f"cannot start {sys.executable}: {exc}", None,
                                    time.monotonic() - start)
        stdout, stderr = _tail(out), _tail(err)
    seconds = time.monotonic() - start
    report: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            with contextlib.suppress(ValueError):
                report = json.loads(line[len(_MARK):])
    detail = _reason(stderr) or str(report.get("reason", ""))
    if rc == 0 and report.get("ok") is True:
        return TrialOutcome("ok", "", 0, seconds)
    if rc == _REFUSED:
        stage = report.get("stage", "load")
        return TrialOutcome("refused", f"{report.get('reason', stage)}: {detail}".rstrip(": "),
                            rc, seconds, stage=str(stage))
    if rc == _SETUP_FAILED:
        return TrialOutcome("error", detail or "llama.cpp could not start", rc, seconds)
    # A crash's last log line is usually an unrelated warning; keep only real messages.
    detail = _reason(stderr, last_words=False)
    return TrialOutcome("crashed", f"{_crash_name(rc)}; {detail}".rstrip("; "), rc, seconds)


class _VerdictCache:
    """A small JSON map of file identity -> trial verdict; a lost write only costs a probe."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) else None

    def put(self, key: str, verdict: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, Timeout):  # a read-only cache must not fail a load
            make_private_dir(self.file.parent)
            with FileLock(str(self.file) + ".lock", timeout=10):
                entries = self._read()
                entries.pop(key, None)
                entries[key] = verdict
                keep = dict(list(entries.items())[-_CACHE_ENTRIES:])
                write_atomic(self.file, json.dumps(keep, indent=0))


def _failure(path: Path, status: str, detail: str, timeout: float) -> str:
    fix = ("Delete it (`localloom rm MODEL`) and pull it again, or pick another model "
           "(`localloom models`).")
    if status == "crashed":
        sig, _, rest = detail.partition("; ")
        return (f"llama.cpp crashed ({sig}) while loading '{path}': the file is corrupt or "
                f"unsupported. LocalLoom caught it in a trial process. {fix}"
                + (f" llama.cpp said: {rest}" if rest else ""))
    if status == "refused":
        return (f"llama.cpp could not load '{path}' ({detail}): the file is corrupt, "
                f"truncated or its architecture is not supported by this llama.cpp. {fix}")
    if status == "timeout":
        return (f"A trial load of '{path}' took over {timeout:.0f} s and was stopped: the file "
                "may be damaged or the disk very slow. Try again, or pick a smaller model.")
    return (f"The trial load of '{path}' could not run ({detail}). Check that "
            "llama-cpp-python works: `localloom doctor`.")


def _check_header(path: Path) -> tuple[GGUFInfo, os.stat_result]:
    try:
        st = path.stat()
        return read_gguf_header(path), st
    except GGUFFormatError as exc:
        raise ModelLoadError(
            f"'{path}' is not a usable GGUF model: {exc} Delete it (`localloom rm MODEL`) and "
            "pull it again, or pick another file."
        ) from exc
    except OSError as exc:
        raise ModelLoadError(f"Cannot read model file '{path}': {exc}. Check the path and its "
                             "permissions.") from exc


def probe_model(path: str | os.PathLike[str], *, settings: Settings | None = None,
                timeout: float | None = None, n_ctx: int = DEFAULT_PROBE_CTX,
                use_cache: bool = True, threads: int | None = None,
                gpu_layers: int | None = None) -> ProbeResult:
    """Check ``path`` (header, then trial loads in a child process) before a real load.

    The trial runs with the configured threads and GPU offload (``threads`` and
    ``gpu_layers`` override them) and each backend config of
    :func:`~localloom.engine.backend.configs_to_try` in turn until one works; the result's
    ``config`` is the one to load with. Raises :class:`ModelLoadError` with the reason when
    none does; its ``__cause__`` is the :class:`GGUFFormatError`, :class:`OSError`,
    :class:`subprocess.CalledProcessError` (the child refused or crashed; a negative
    ``returncode`` is the signal) or :class:`subprocess.TimeoutExpired`. ``timeout`` (per
    trial) defaults to 60 s plus 30 s per GiB.
    """
    start = time.monotonic()
    settings = settings or Settings()
    file = Path(path).expanduser().resolve()
    info, st = _check_header(file)
    limit = timeout if timeout is not None else 60.0 + 30.0 * st.st_size / 2**30
    plan = _Plan.from_settings(settings, threads, gpu_layers)
    cache = _VerdictCache(settings.cache_dir / _CACHE_FILE)
    key = f"{file}|{st.st_size}|{st.st_mtime_ns}|{n_ctx}|{plan.key()}"
    verdict = cache.get(key) if use_cache else None
    cached = verdict is not None
    if verdict is None:
        verdict = plan.run(file, limit, n_ctx)
        if all(a["status"] in ("ok", "refused", "crashed") for a in verdict["attempts"]):
            cache.put(key, verdict)  # deterministic for this file, build and machine
    attempts = [a for a in verdict.get("attempts", []) if isinstance(a, dict)]
    if verdict.get("status") == "ok" and isinstance(verdict.get("config"), dict):
        config = BackendConfig.from_json(verdict["config"])
        failed = tuple(f"{a['config']}: {a['status']} ({a.get('detail') or 'no detail'})"
                       for a in attempts if a.get("status") != "ok")
        if failed and not cached:
            _log.warning(_fallback_note(file, config, failed))
        return ProbeResult(file, st.st_size, info.architecture, info.n_params, cached,
                           time.monotonic() - start, config, failed)
    first = attempts[0] if attempts else {"status": "error", "detail": "no trial ran"}
    status, detail = str(first.get("status")), str(first.get("detail", ""))
    cause: Exception
    if status == "timeout":
        cause = subprocess.TimeoutExpired("trial load", limit)
    else:
        rc = first.get("returncode")
        cause = subprocess.CalledProcessError(rc if isinstance(rc, int) else -1, "trial load",
                                              stderr=detail)
    message = _failure(file, status, detail, limit)
    if plan.mode != "auto" and status in ("crashed", "timeout"):
        message += (f" LOCALLOOM_EXTRA_BUFFERS is '{plan.mode}': set it to 'auto' to let "
                    "LocalLoom try safer backend configurations.")
    if len(attempts) > 1:
        message += (" The safer configurations failed too: "
                    + "; ".join(f"{a['config']}: {a['status']}" for a in attempts[1:]) + ".")
    raise ModelLoadError(message) from cause


def _fallback_note(file: Path, config: BackendConfig, failed: tuple[str, ...]) -> str:
    cause = ("GPU offload failed: check the driver and free VRAM (LOCALLOOM_N_GPU_LAYERS "
             "sets the layers)" if config.name == "cpu-only" else
             f"known cause on Intel Xeon CPUs with AMX: {AMX_ISSUE}")
    return (f"llama.cpp failed on '{file.name}' with {failed[0]}; LocalLoom loads it with "
            f"{config.describe()} (config '{config.name}'); {cause}. "
            "LOCALLOOM_EXTRA_BUFFERS=auto|on|no-amx|off forces a choice; `localloom doctor` "
            "shows it.")


@dataclass(frozen=True)
class _Plan:
    """What a trial depends on besides the file, and the configs to try in order."""

    threads: int
    gpu_layers: int
    mode: str
    simulate: str | None
    amx_present: bool

    @classmethod
    def from_settings(cls, settings: Settings, threads: int | None,
                      gpu_layers: int | None) -> _Plan:
        from localloom.engine.runtime import LoadOptions

        options = LoadOptions.from_settings(settings)
        simulate = settings.simulate_crash or None
        amx = cpu_has_amx() or "amx" in (simulate or "")  # the switch pretends AMX is here
        return cls(threads or options.n_threads,
                   options.n_gpu_layers if gpu_layers is None else gpu_layers,
                   settings.extra_buffers, simulate, amx)

    def configs(self) -> list[BackendConfig]:
        """The backend configs to try, riskiest part off first."""
        mode: ExtraBuffers = self.mode  # type: ignore[assignment]
        return configs_to_try(mode, gpu_layers=self.gpu_layers, amx_present=self.amx_present)

    def key(self) -> str:
        """The verdict cache key part: build, CPU flags, GPUs, threads, offload, mode."""
        return (f"{machine_fingerprint()}|t{self.threads}|g{self.gpu_layers}|{self.mode}|"
                f"{self.simulate or ''}|{int(self.amx_present)}")

    def run(self, file: Path, limit: float, n_ctx: int) -> dict[str, Any]:
        """Trial-load with each config until one works or the file itself is refused."""
        attempts: list[dict[str, Any]] = []
        for config in self.configs():
            spec = TrialSpec(config, self.threads, self.simulate, self.amx_present)
            outcome = trial_load(file, timeout=limit, n_ctx=n_ctx, spec=spec)
            attempts.append({"config": config.name, "status": outcome.status,
                             "detail": outcome.detail, "returncode": outcome.returncode,
                             "seconds": round(outcome.seconds, 3)})
            if outcome.status == "ok":
                return {"status": "ok", "config": config.to_json(), "attempts": attempts}
            if outcome.blames_file or outcome.status == "error":
                break  # another config will not help: the file or the install is at fault
        return {"status": "failed", "config": None, "attempts": attempts}


# --------------------------------------------------------------------------- the child side


def _say(report: dict[str, Any]) -> None:
    sys.stdout.write(_MARK + json.dumps(report) + "\n")
    sys.stdout.flush()


def no_core_dumps() -> None:
    """In a child that may crash: leave no core file behind (POSIX only)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child_load(llama_cpp: Any, path: str, n_ctx: int, spec: dict[str, Any]) -> dict[str, Any]:
    from localloom.engine.backend import BackendConfig, apply_config, crash_now, simulated_crash

    config = BackendConfig.from_json(spec["config"])
    params = llama_cpp.llama_model_default_params()
    params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP
    params.vocab_only = False
    overrides = apply_config(params, config, Path(path))
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    del overrides  # read during the load only
    if not model:
        return {"ok": False, "stage": "load", "reason": "llama.cpp refused the file"}
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        if n_vocab <= 0:
            return {"ok": False, "stage": "vocab", "reason": "the vocabulary is empty"}
        if n_ctx <= 0:
            return {"ok": True, "n_vocab": n_vocab}
        if simulated_crash(config, spec.get("simulate"), amx_present=bool(spec.get("amx"))):
            crash_now()  # where the real AMX crash happens: the first batched decode
        return _child_decode(llama_cpp, model, n_vocab, n_ctx, int(spec.get("threads", 1)))
    finally:
        llama_cpp.llama_model_free(model)


def _child_decode(llama_cpp: Any, model: Any, n_vocab: int, n_ctx: int,
                  n_threads: int) -> dict[str, Any]:
    """What a real session does, small: two sequences, a batched prefill of both prompts,
    then decode steps of both, on the configured threads."""
    n_seq, n_steps = 2, _TRIAL_STEPS
    per_seq = max(n_ctx, _TRIAL_PROMPT + n_steps + 8)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = per_seq * n_seq
    cparams.n_seq_max = n_seq
    cparams.kv_unified = False
    cparams.n_batch = cparams.n_ubatch = 2 * _TRIAL_PROMPT
    cparams.n_threads = cparams.n_threads_batch = max(1, n_threads)
    cparams.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        return {"ok": False, "stage": "context", "reason": "llama.cpp cannot build a context"}
    batch = llama_cpp.llama_batch_init(2 * _TRIAL_PROMPT, 0, n_seq)
    try:
        lengths = (_TRIAL_PROMPT, _TRIAL_PROMPT // 2 + 3)  # unequal, as real prompts are
        prompts = [[(7919 * (i + 1) + 104729 * s) % n_vocab for i in range(k)]
                   for s, k in enumerate(lengths)]
        rows = _fill(batch, prompts, [0, 0])
        positions = list(lengths)
        stride = max(1, n_vocab // 64)
        for _ in range(n_steps + 1):
            if llama_cpp.llama_decode(ctx, batch) != 0:
                return {"ok": False, "stage": "decode", "reason": "llama.cpp cannot decode"}
            nexts = []
            for row in rows:
                logits = llama_cpp.llama_get_logits_ith(ctx, row)
                values = [float(logits[j]) for j in range(0, n_vocab, stride)]
                if not all(math.isfinite(v) for v in values):
                    return {"ok": False, "stage": "decode",
                            "reason": "the model computes non-finite logits"}
                nexts.append(max(range(len(values)), key=values.__getitem__) * stride)
            rows = _fill(batch, [[t] for t in nexts], positions)
            positions = [p + 1 for p in positions]
        return {"ok": True, "n_vocab": n_vocab}
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def _fill(batch: Any, tokens: list[list[int]], starts: list[int]) -> list[int]:
    """Put sequence ``s``'s tokens in the batch from position ``starts[s]``; returns the
    index of each sequence's last token, whose logits are asked for."""
    n, rows = 0, []
    for seq, toks in enumerate(tokens):
        for j, token in enumerate(toks):
            batch.token[n] = token
            batch.pos[n] = starts[seq] + j
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = j == len(toks) - 1
            n += 1
        rows.append(n - 1)
    batch.n_tokens = n
    return rows


def _child_main(argv: list[str]) -> int:
    """Trial-load ``argv[0]`` (context size ``argv[1]``); exit status and a JSON line tell."""
    path, n_ctx = argv[0], int(argv[1]) if len(argv) > 1 else DEFAULT_PROBE_CTX
    spec: dict[str, Any] = json.loads(argv[2]) if len(argv) > 2 else {
        "config": {"name": "default", "extra_buffers": True, "repack_only": False,
                   "gpu_layers": 0}, "threads": 1}
    no_core_dumps()
    try:
        import llama_cpp
    except Exception as exc:  # broken install: not the file's fault
        sys.stderr.write(f"cannot import llama_cpp: {exc}\n")
        return _SETUP_FAILED

    def on_log(level: int, text: bytes | None, user_data: Any) -> None:
        if text and level in (3, 4):  # GGML_LOG_LEVEL_WARN, _ERROR
            sys.stderr.write(text.decode("utf-8", errors="replace"))
            sys.stderr.flush()

    callback = llama_cpp.llama_log_callback(on_log)
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    report = _child_load(llama_cpp, path, n_ctx, spec)
    _say(report)
    return 0 if report["ok"] else _REFUSED


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m localloom.engine.probe FILE.gguf [N_CTX [SPEC]]\n")
        raise SystemExit(2)
    raise SystemExit(_child_main(sys.argv[1:]))
