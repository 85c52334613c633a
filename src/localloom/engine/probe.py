"""Check a model file before LocalLoom loads it: header in-process, weights in a throwaway process.

GGUF files come from strangers, and llama.cpp parses them in C++: a crafted or damaged file
can crash the process that loads it. So a file is first read by LocalLoom's own bounded
header reader, then loaded once by llama.cpp in a separate Python process (weights, a tiny
context and one decoded token). If that process crashes, hangs or refuses the file, the
user gets :class:`ModelLoadError` with the reason and LocalLoom keeps running. The verdict
is cached per (path, size, mtime) under ``Settings.cache_dir``, so a good model is probed once.

Example::

    from localloom.engine.probe import probe_model
    result = probe_model("tinyllama-1.1b-chat-v1.0.Q4_0.gguf")   # or ModelLoadError
    print(result.architecture, result.cached, f"{result.seconds:.1f} s")

From a shell, ``python -m localloom.engine.probe FILE.gguf`` runs the trial load itself and
prints its JSON verdict.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout

from localloom.config import Settings
from localloom.errors import ModelLoadError
from localloom.gguf_header import GGUFFormatError, GGUFInfo, read_gguf_header

__all__ = ["DEFAULT_PROBE_CTX", "ProbeResult", "TrialOutcome", "probe_model", "trial_load"]

DEFAULT_PROBE_CTX = 64
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


@dataclass(frozen=True)
class ProbeResult:
    """A file that passed both checks."""

    path: Path
    file_size: int
    architecture: str | None
    n_params: int
    cached: bool
    seconds: float


def _tail(path: Path) -> str:
    with path.open("rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL))
        return f.read().decode("utf-8", errors="replace")


def _reason(stderr: str) -> str:
    """llama.cpp's most telling line: its load error, an assert, or the last words."""
    lines = [_SOURCE_PATH.sub(r"\1", ln.strip()) for ln in stderr.splitlines() if ln.strip()]
    for marker in ("error loading model:", "GGML_ASSERT", "terminate called", "error"):
        hits = [ln for ln in lines if marker in ln]
        if hits:
            return hits[-1][:400]
    return " | ".join(ln[:200] for ln in lines[-2:])


def _crash_name(rc: int) -> str:
    if rc < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-rc).name
        return f"signal {-rc}"
    return _WINDOWS_CRASHES.get(rc & 0xFFFF_FFFF, f"exit code {rc}")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder holding `localloom`
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    return env


def trial_load(path: str | os.PathLike[str], *, timeout: float = 120.0,
               n_ctx: int = DEFAULT_PROBE_CTX) -> TrialOutcome:
    """Load ``path`` with llama.cpp in a child process and report what happened.

    No header check runs first (:func:`probe_model` does that): this is the raw verdict of
    llama.cpp, and whatever it does to the child, this process is unaffected. ``n_ctx`` > 0
    also builds a context of that size and decodes one token.
    """
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="localloom-probe-") as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        cmd = [sys.executable, "-c", _BOOTSTRAP, str(Path(__file__).resolve()),
               str(Path(path).resolve()), str(n_ctx)]
        with out.open("wb") as fo, err.open("wb") as fe:
            try:
                rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                                    cwd=tmp, env=_child_env(), timeout=timeout,
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
                            rc, seconds)
    if rc == _SETUP_FAILED:
        return TrialOutcome("error", detail or "llama.cpp could not start", rc, seconds)
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
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.file) + ".lock", timeout=10):
                entries = self._read()
                entries.pop(key, None)
                entries[key] = verdict
                keep = dict(list(entries.items())[-_CACHE_ENTRIES:])
                fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".probe-", suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(keep, f, indent=0)
                os.replace(tmp, self.file)


def _llama_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "unknown"


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
                use_cache: bool = True) -> ProbeResult:
    """Check ``path`` (header, then a trial load in a child process) before a real load.

    Raises :class:`ModelLoadError` with the reason; its ``__cause__`` is the
    :class:`GGUFFormatError`, :class:`OSError`, :class:`subprocess.CalledProcessError` (the
    child refused or crashed; a negative ``returncode`` is the signal) or
    :class:`subprocess.TimeoutExpired`. ``timeout`` defaults to 60 s plus 30 s per GiB.
    """
    start = time.monotonic()
    file = Path(path).expanduser().resolve()
    info, st = _check_header(file)
    limit = timeout if timeout is not None else 60.0 + 30.0 * st.st_size / 2**30
    cache = _VerdictCache((settings or Settings()).cache_dir / _CACHE_FILE)
    key = f"{file}|{st.st_size}|{st.st_mtime_ns}|{n_ctx}|{_llama_version()}"
    verdict = cache.get(key) if use_cache else None
    cached = verdict is not None
    if verdict is None:
        outcome = trial_load(file, timeout=limit, n_ctx=n_ctx)
        verdict = {"status": outcome.status, "detail": outcome.detail,
                   "returncode": outcome.returncode, "seconds": round(outcome.seconds, 3)}
        if outcome.status in ("ok", "refused", "crashed"):  # deterministic for this file
            cache.put(key, verdict)
    status, detail = str(verdict.get("status")), str(verdict.get("detail", ""))
    if status == "ok":
        return ProbeResult(file, st.st_size, info.architecture, info.n_params, cached,
                           time.monotonic() - start)
    cause: Exception
    if status == "timeout":
        cause = subprocess.TimeoutExpired("trial load", limit)
    else:
        rc = verdict.get("returncode")
        cause = subprocess.CalledProcessError(rc if isinstance(rc, int) else -1, "trial load",
                                              stderr=detail)
    raise ModelLoadError(_failure(file, status, detail, limit)) from cause


# --------------------------------------------------------------------------- the child side


def _say(report: dict[str, Any]) -> None:
    sys.stdout.write(_MARK + json.dumps(report) + "\n")
    sys.stdout.flush()


def _child_load(llama_cpp: Any, path: str, n_ctx: int) -> dict[str, Any]:
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0  # a verdict on the file, not on the GPU; and no VRAM taken
    params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP
    params.vocab_only = False
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        return {"ok": False, "stage": "load", "reason": "llama.cpp refused the file"}
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        if n_vocab <= 0:
            return {"ok": False, "stage": "vocab", "reason": "the vocabulary is empty"}
        if n_ctx <= 0:
            return {"ok": True, "n_vocab": n_vocab}
        return _child_decode(llama_cpp, model, vocab, n_vocab, n_ctx)
    finally:
        llama_cpp.llama_model_free(model)


def _child_decode(llama_cpp: Any, model: Any, vocab: Any, n_vocab: int,
                  n_ctx: int) -> dict[str, Any]:
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_batch = cparams.n_ubatch = min(n_ctx, 8)
    cparams.n_seq_max = 1
    cparams.n_threads = cparams.n_threads_batch = 1
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        return {"ok": False, "stage": "context", "reason": "llama.cpp cannot build a context"}
    try:
        token = int(llama_cpp.llama_vocab_bos(vocab))
        token = token if 0 <= token < n_vocab else 0
        tokens = (llama_cpp.llama_token * 1)(token)
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tokens, 1)) != 0:
            return {"ok": False, "stage": "decode", "reason": "llama.cpp cannot decode a token"}
        return {"ok": True, "n_vocab": n_vocab}
    finally:
        llama_cpp.llama_free(ctx)


def _child_main(argv: list[str]) -> int:
    """Trial-load ``argv[0]`` (context size ``argv[1]``); exit status and a JSON line tell."""
    path, n_ctx = argv[0], int(argv[1]) if len(argv) > 1 else DEFAULT_PROBE_CTX
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource  # POSIX only: a crash should not leave a core file behind

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
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
    report = _child_load(llama_cpp, path, n_ctx)
    _say(report)
    return 0 if report["ok"] else _REFUSED


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m localloom.engine.probe FILE.gguf [N_CTX]\n")
        raise SystemExit(2)
    raise SystemExit(_child_main(sys.argv[1:]))
