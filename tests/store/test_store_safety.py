"""Names and links that try to leave the cache, and pulls that compete or die midway."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import FILE_SIZE, Published, hub_entry

from fakehub import FakeHub
from localloom.config import Settings
from localloom.errors import UnsafePathError
from localloom.store import ModelStore

WORKER = Path(__file__).with_name("pull_worker.py")


@pytest.mark.parametrize("source", [
    {"file": "../escape.gguf"},
    {"file": "sub/../../escape.gguf"},
    {"file": "/etc/passwd"},
    {"file": "..\\escape.gguf"},
    {"file": "C:escape.gguf"},
    {"file": ".localloom.json"},
    {"repo": "../../api/models"},
    {"repo": "/abs/repo"},
    {"revision": "../../main"},
    {"revision": "/main"},
])
def test_names_that_would_escape_the_cache_are_refused_before_any_request(
        fake_hub: FakeHub, store: ModelStore, source: dict[str, str]) -> None:
    entry = hub_entry(**source)

    with pytest.raises(UnsafePathError, match="not allowed"):
        store.path_for(entry)
    with pytest.raises(UnsafePathError):
        store.pull(entry)
    assert fake_hub.requests == []


def test_file_in_a_subfolder_of_the_repo_is_allowed(
        fake_hub: FakeHub, store: ModelStore) -> None:
    entry = hub_entry(file="Q4_0/model.gguf")
    fake_hub.add_file(entry.source.repo or "", "Q4_0/model.gguf", b"m" * 1000)

    path = store.pull(entry)

    assert path == Settings().models_dir / "fake-model" / "Q4_0" / "model.gguf"
    assert store.delete(entry) and not path.exists()


def test_symlink_planted_as_the_model_folder_is_refused_and_removable(
        publish: Callable[..., Published], store: ModelStore, tmp_path: Path) -> None:
    model = publish()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("user data")
    models_dir = Settings().models_dir
    models_dir.mkdir(parents=True)
    (models_dir / "fake-model").symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafePathError, match="outside the cache"):
        store.pull(model.entry)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]

    assert store.delete(model.entry)  # drops the link, not what it points to
    assert (outside / "keep.txt").read_text() == "user data"
    assert store.pull(model.entry).read_bytes() == model.file.data


@pytest.mark.parametrize("name", ["partial/fake-model.part", "locks/fake-model.lock"])
def test_symlink_planted_as_a_partial_or_lock_never_writes_outside(
        publish: Callable[..., Published], store: ModelStore, tmp_path: Path,
        name: str) -> None:
    model = publish()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = Settings().cache_dir / name
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)

    with pytest.raises(UnsafePathError):
        store.pull(model.entry)
    assert victim.read_text() == "precious"

    store.delete(model.entry)
    assert victim.read_text() == "precious"
    assert store.pull(model.entry).read_bytes() == model.file.data
    assert victim.read_text() == "precious"


def test_four_threads_pulling_one_model_download_it_once(
        fake_hub: FakeHub, publish: Callable[..., Published]) -> None:
    model = publish()
    fake_hub.throttle(12 * 1024 * 1024)  # ~0.25 s, so the pulls overlap
    results: list[Path] = []
    texts: list[str] = []

    def pull() -> None:
        store = ModelStore(Settings())
        results.append(store.pull(model.entry, progress=lambda *a: texts.append(a[3])))

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 4 and len(set(results)) == 1
    assert len(fake_hub.body_requests()) == 1
    assert "Waiting for another download of fake-model" in texts
    assert results[0].read_bytes() == model.file.data


def _model_dir_files(settings: Settings) -> list[str]:
    model_dir = settings.models_dir / "fake-model"
    return sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*"))


def _partials(settings: Settings) -> list[Path]:
    partial = settings.cache_dir / "partial"
    return sorted(partial.iterdir()) if partial.is_dir() else []


def test_four_processes_pulling_one_model_leave_exactly_one_verified_file(
        fake_hub: FakeHub, publish: Callable[..., Published]) -> None:
    model = publish()
    fake_hub.throttle(1024 * 1024)  # ~3 s: the other processes start while it runs
    procs = [subprocess.Popen([sys.executable, str(WORKER), model.entry.model_dump_json()],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [proc.communicate(timeout=120) for proc in procs]

    settings = Settings()
    final = ModelStore(settings).path_for(model.entry)
    assert [proc.returncode for proc in procs] == [0] * 4, outputs
    assert {out.strip() for out, _err in outputs} == {f"OK {final}"}
    assert len(fake_hub.body_requests()) == 1
    assert _model_dir_files(settings) == [".localloom.json", "fake-model.Q4_0.gguf"]
    assert _partials(settings) == []
    assert ModelStore(settings).verify(model.entry).ok


def _wait_for_size(path: Path, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= size):
        assert time.monotonic() < deadline, f"{path} never reached {size} bytes"
        time.sleep(0.02)


def test_process_killed_mid_download_leaves_no_file_and_the_next_pull_resumes(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    fake_hub.throttle(1024 * 1024)
    part = Settings().cache_dir / "partial" / "fake-model.part"
    proc = subprocess.Popen([sys.executable, str(WORKER), model.entry.model_dump_json()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_size(part, FILE_SIZE // 3)
    proc.kill()
    proc.wait(timeout=30)

    assert not store.path_for(model.entry).exists()
    assert not store.is_cached(model.entry)
    kept = part.stat().st_size
    fake_hub.throttle(None)
    fake_hub.reset_requests()

    assert store.pull(model.entry).read_bytes() == model.file.data
    assert [r.range for r in fake_hub.body_requests()] == [f"bytes={kept}-"]


@pytest.mark.skipif(sys.platform == "win32",
                    reason="needs RLIMIT_FSIZE")
def test_disk_filling_up_mid_download_is_reported_and_resumable(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    limit = 1_000_000
    result = subprocess.run(
        [sys.executable, str(WORKER), model.entry.model_dump_json(), str(limit)],
        capture_output=True, text=True, timeout=120)

    assert result.returncode == 1
    assert result.stdout.startswith("ERROR DiskSpaceError"), result.stdout + result.stderr
    assert "localloom pull fake-model" in result.stdout
    assert not store.path_for(model.entry).exists()
    part = Settings().cache_dir / "partial" / "fake-model.part"
    assert 0 < part.stat().st_size <= limit

    kept = part.stat().st_size
    fake_hub.reset_requests()
    assert store.pull(model.entry).read_bytes() == model.file.data
    assert [r.range for r in fake_hub.body_requests()] == [f"bytes={kept}-"]


def test_a_pull_sends_the_hub_nothing_but_the_file_requests(
        fake_hub: FakeHub, publish: Callable[..., Published]) -> None:
    """Privacy: huggingface_hub's telemetry lookups (e.g. /api/agent-harnesses) stay off."""
    model = publish()
    proc = subprocess.run([sys.executable, str(WORKER), model.entry.model_dump_json()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    paths = {record.path.split("?")[0] for record in fake_hub.requests}
    assert paths, "the fake hub saw no request at all"
    assert all("/resolve/" in p for p in paths), paths
