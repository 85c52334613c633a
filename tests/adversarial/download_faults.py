"""Tools for the broken-download tests: entries, a connection-cutting proxy, cache checks.

- :func:`hub_entry` builds a catalog entry for a file on the fake Hub.
- :class:`CuttingProxy` sits between LocalLoom and the fake Hub and drops each connection
  after a planned number of response bytes, headers included (so HEADs die too).
- :func:`inspect_cache` says what a user would find in the cache: a verified file, none, or
  something worse (a half-promoted file, a partial with wrong bytes, stray files).
  :func:`assert_verified_and_clean` demands the good end state: one verified file, no leftovers.
- :func:`pull_in_thread` pulls but fails (instead of hanging) if a stale lock blocks it;
  :func:`settle` waits for the Hub to log the requests of a puller that died, then clears them.
- :func:`snapshot` fingerprints a directory tree, to prove nothing outside the cache changed.
- :func:`tmpfs` mounts a small RAM disk (root on Linux only) for real disk-full tests.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakehub import FakeHub
from localloom.catalog.entry import ModelEntry, ModelSource
from localloom.config import Settings
from localloom.store import ModelStore

__all__ = [
    "WORKER",
    "CacheState",
    "CuttingProxy",
    "assert_verified_and_clean",
    "fill_disk",
    "hub_entry",
    "inspect_cache",
    "partial_files",
    "pull_in_thread",
    "settle",
    "snapshot",
    "start_worker",
    "tmpfs",
    "wait_until",
]

WORKER = Path(__file__).with_name("download_worker.py")
SIDECAR = ".localloom.json"


def hub_entry(model_id: str = "victim", repo: str = "adv-org/victim-GGUF",
              file: str = "victim.Q4_0.gguf", download_size: int = 1,
              **source: Any) -> ModelEntry:
    """A catalog entry for a file on the (fake) Hub."""
    return ModelEntry(
        id=model_id, display_name=model_id, download_size=download_size, ram_min_gb=0.1,
        ram_max_gb=0.2, context_length=2048,
        source=ModelSource(kind="hub", repo=repo, file=file, **source),
    )


def start_worker(entry: ModelEntry, *args: str) -> subprocess.Popen[str]:
    """Start download_worker.py for ``entry`` (it inherits LOCALLOOM_HOME and HF_ENDPOINT)."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), entry.model_dump_json(), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def wait_until(check: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    """Poll ``check`` every millisecond until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.001)


@dataclass
class CacheState:
    """What the cache holds for one model after an attempt."""

    final_exists: bool = False
    final_intact: bool = False  # the file at the final path has exactly the right bytes
    verified: bool = False  # the store vouches for it (a valid sidecar)
    half_promoted: bool = False  # a final file (or a vouched one) with wrong bytes
    corrupt_partial: bool = False  # kept bytes that are not a prefix of the true file
    part_size: int = 0
    stray: list[str] = field(default_factory=list)  # files that should not be there

    @property
    def verified_or_none(self) -> bool:
        """The promise: a verified file, or no file at the final path (maybe a clean .part)."""
        return not self.half_promoted and not self.corrupt_partial and (
            self.verified or not self.final_exists or self.final_intact)


def inspect_cache(settings: Settings, entry: ModelEntry, data: bytes) -> CacheState:
    """Look at the cache as a user (and the next pull) would find it."""
    store = ModelStore(settings)
    state = CacheState()
    final = store.path_for(entry)
    state.final_exists = final.exists() or final.is_symlink()
    if state.final_exists:
        state.final_intact = (not final.is_symlink() and final.stat().st_size == len(data)
                              and _sha256(final) == hashlib.sha256(data).hexdigest())
    state.verified = store.is_cached(entry)
    state.half_promoted = state.final_exists and not state.final_intact
    partial = settings.cache_dir / "partial"
    part = partial / f"{entry.id}.part"
    if part.is_file():
        kept = part.read_bytes()
        state.part_size = len(kept)
        state.corrupt_partial = len(kept) > len(data) or data[:len(kept)] != kept
    allowed_partial = {f"{entry.id}.part", f"{entry.id}.part.json"}
    if partial.is_dir():
        state.stray += [f"partial/{p.name}" for p in partial.iterdir()
                        if p.name not in allowed_partial]
    model_dir = settings.models_dir / entry.id
    if model_dir.is_dir():
        allowed = {final, model_dir / SIDECAR}
        state.stray += [str(p.relative_to(settings.cache_dir)) for p in model_dir.rglob("*")
                        if p.is_file() and p not in allowed]
    return state


def partial_files(settings: Settings) -> list[str]:
    partial = settings.cache_dir / "partial"
    return sorted(p.name for p in partial.iterdir()) if partial.is_dir() else []


def assert_verified_and_clean(settings: Settings, entry: ModelEntry, data: bytes) -> None:
    """The end state a user wants: one verified file with the right bytes, nothing else."""
    state = inspect_cache(settings, entry, data)
    assert state.verified and state.final_intact, state
    assert not state.stray, state.stray
    assert partial_files(settings) == []
    assert ModelStore(settings).verify(entry).ok


def pull_in_thread(store: ModelStore, entry: ModelEntry, timeout: float = 60) -> Path:
    """Pull, failing (not hanging) if a stale lock blocked it."""
    result: list[Path | BaseException] = []

    def run() -> None:
        try:
            result.append(store.pull(entry))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, f"the pull did not finish in {timeout} s (a stale lock?)"
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def settle(hub: FakeHub, quiet: float = 0.3) -> None:
    """Wait until the Hub has logged the requests of a puller that died (its last writes
    fail, and are logged, a moment after the process is gone); then forget them."""
    deadline = time.monotonic() + 10
    seen, since = len(hub.requests), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.02)
        if len(hub.requests) != seen:
            seen, since = len(hub.requests), time.monotonic()
    hub.reset_requests()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def snapshot(root: Path, skip: Sequence[Path] = ()) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root`` (not following links, not under ``skip``) and its content."""
    found: dict[str, tuple[Any, ...]] = {}
    skipped = {p.resolve() for p in skip}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skipped
                       or (here / d).is_symlink()]
        for name in [*dirnames, *filenames]:
            path = here / name
            info = os.lstat(path)
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = ("link", os.readlink(path))
            elif path.is_file():
                found[key] = ("file", info.st_size, info.st_mtime_ns, info.st_mode,
                              _sha256(path))
            else:
                found[key] = ("dir", info.st_mode)
    return found


@contextmanager
def tmpfs(mount_point: Path, size: int) -> Iterator[Path]:
    """Mount a ``size``-byte tmpfs at ``mount_point`` (skips the test where that is impossible)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root on Linux")
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(path: Path) -> int:
    """Write ``path`` until the disk refuses (ENOSPC); return the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written = 0
    try:
        for block in (1 << 16, 1 << 12, 1):
            with suppress(OSError):
                while True:
                    written += os.write(fd, b"\0" * block)
    finally:
        os.close(fd)
    return written


class CuttingProxy:
    """A TCP proxy to ``upstream`` that drops connection N after ``budgets[N]`` response bytes.

    Headers count, so a small budget kills a HEAD or a GET before its body starts. Budgets
    run out into ``None``: later connections pass everything.
    """

    def __init__(self, upstream: str, budgets: Sequence[int | None]) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self._budgets = list(budgets)
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.cuts = 0
        self._thread = threading.Thread(target=self._accept, daemon=True, name="cutting-proxy")

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                budget = self._budgets.pop(0) if self._budgets else None
            threading.Thread(target=self._serve, args=(client, budget), daemon=True).start()

    def _serve(self, client: socket.socket, budget: int | None) -> None:
        try:
            upstream = socket.create_connection(self._upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pump, args=(client, upstream, None), daemon=True).start()
        if _pump(upstream, client, budget):
            with self._lock:
                self.cuts += 1
        for sock in (client, upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _pump(src: socket.socket, dst: socket.socket, budget: int | None) -> bool:
    """Copy ``src`` to ``dst``; True if it stopped because ``budget`` bytes were sent."""
    sent = 0
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                # Pass the end on, so a keep-alive server lets go of its side too.
                with suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return False
            if budget is not None and sent + len(data) >= budget:
                dst.sendall(data[:budget - sent])
                return True
            dst.sendall(data)
            sent += len(data)
    except OSError:
        return False
