"""Start and stop the three OpenAI-compatible servers the benchmark compares.

- LocalLoom's own server (``python -m localloom serve``, configured through ``LOCALLOOM_*``);
- llama.cpp's ``llama-server -np N -c N*ctx --cont-batching``;
- llama-cpp-python's server (``python -m llama_cpp.server``), which serves one request at a time.

Each runs as a child process in its own session, so stopping it also stops its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.models import ModelFile
from bench.native import Peers

__all__ = ["SERVER_KINDS", "ServerHandle", "ServerSpec", "running_server"]

SERVER_KINDS = ("localloom", "llama-server", "llama-cpp-python")
SERVER_LABELS = {
    "localloom": "LocalLoom server",
    "llama-server": "llama-server (C++)",
    "llama-cpp-python": "llama-cpp-python server",
}


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server for one model."""

    kind: str
    model: ModelFile
    n_parallel: int
    ctx_per_seq: int
    threads: int
    n_gpu_layers: int
    home: Path  # LocalLoom's LOCALLOOM_HOME for the bench
    peers: Peers | None
    log_dir: Path


@dataclass
class ServerHandle:
    """A running server: where to send requests and with which headers."""

    base_url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(spec: ServerSpec, port: int) -> tuple[list[str], dict[str, str], str]:
    env = dict(os.environ)
    model_path = str(spec.model.path)
    if spec.kind == "llama-server":
        if spec.peers is None:
            raise RuntimeError("llama-server needs the native peers")
        cmd = [str(spec.peers.exe("llama-server")), "-m", model_path, "--host", "127.0.0.1",
               "--port", str(port), "-np", str(spec.n_parallel),
               "-c", str(spec.n_parallel * spec.ctx_per_seq), "--cont-batching",
               "-t", str(spec.threads), "-ngl", str(spec.n_gpu_layers), "--no-webui"]
        return cmd, env, model_path
    if spec.kind == "llama-cpp-python":
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model_path,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(spec.ctx_per_seq),
               "--n_threads", str(spec.threads), "--n_gpu_layers", str(spec.n_gpu_layers)]
        return cmd, env, model_path
    if spec.kind == "localloom":
        env.update(
            LOCALLOOM_HOME=str(spec.home), LOCALLOOM_HOST="127.0.0.1", LOCALLOOM_PORT=str(port),
            LOCALLOOM_N_PARALLEL=str(spec.n_parallel), LOCALLOOM_N_THREADS=str(spec.threads),
            LOCALLOOM_N_GPU_LAYERS=str(spec.n_gpu_layers), LOCALLOOM_N_CTX=str(spec.ctx_per_seq),
            LOCALLOOM_OFFLINE="1",
            HF_HUB_OFFLINE="1",
        )
        return [sys.executable, "-m", "localloom", "serve"], env, spec.model.model_id
    raise ValueError(f"unknown server kind {spec.kind!r}")


def _headers(spec: ServerSpec) -> dict[str, str]:
    if spec.kind != "localloom":
        return {}
    token_file = spec.home / "config" / "server-token"
    if not token_file.exists():
        return {}
    return {"Authorization": f"Bearer {token_file.read_text().strip()}"}


def _wait_ready(proc: subprocess.Popen[bytes], spec: ServerSpec, url: str, timeout: float,
                log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    probe = "/health" if spec.kind == "llama-server" else "/v1/models"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{spec.kind} exited with {proc.returncode}:\n{tail}")
        headers = _headers(spec)
        try:
            r = httpx.get(url + probe, headers=headers, timeout=5)
            if r.status_code == 200:
                return headers
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{spec.kind} did not become ready in {timeout:.0f} s (log: {log_path})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    group = hasattr(os, "killpg")  # POSIX: the server's whole session; elsewhere the process
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM) if group else proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        proc.wait(timeout=15)


@contextlib.contextmanager
def running_server(spec: ServerSpec, ready_timeout: float = 300) -> Iterator[ServerHandle]:
    """Start a server for `spec`, wait until it answers, and stop it on exit."""
    port = _free_port()
    cmd, env, model_name = _command(spec, port)
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = spec.log_dir / f"{spec.kind}-{spec.model.key}-np{spec.n_parallel}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        headers = _wait_ready(proc, spec, url, ready_timeout, log_path)
        yield ServerHandle(base_url=url, model=model_name, headers=headers)
    finally:
        _stop(proc)
