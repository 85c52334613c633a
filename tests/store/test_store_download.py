"""Downloads from the fake Hub: resume, integrity, auth, progress, redirects."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import FILE_SIZE, Published, hub_entry

from fakehub import FakeHub
from localloom.config import Settings
from localloom.errors import DiskSpaceError, DownloadError, HubAuthError, IntegrityError
from localloom.store import ModelStore


def _partials(settings: Settings) -> list[Path]:
    partial = settings.cache_dir / "partial"
    return sorted(partial.iterdir()) if partial.is_dir() else []


def test_pull_gives_the_exact_file_and_reports_throttled_progress(
        publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    reports: list[tuple[float, int, int, str]] = []

    path = store.pull(model.entry, progress=lambda *args: reports.append(args))

    assert path.read_bytes() == model.file.data
    assert store.is_cached(model.entry)
    assert reports[-1] == (1.0, FILE_SIZE, FILE_SIZE, "fake-model is ready")
    assert any(text == "Verifying fake-model" for *_, text in reports)
    fractions = [fraction for fraction, *_ in reports]
    assert fractions == sorted(fractions)
    assert len(reports) < 40  # throttled: not one call per network chunk
    assert not _partials(Settings())


def test_transfer_cut_at_half_resumes_from_the_cut_on_the_next_pull(
        fake_hub: FakeHub, publish: Callable[..., Published]) -> None:
    model = publish()
    half = FILE_SIZE // 2
    fake_hub.cut_after(half, times=1)
    no_retry = ModelStore(Settings(), retries=0)

    with pytest.raises(DownloadError, match="run the same command again") as info:
        no_retry.pull(model.entry)
    assert "localloom pull fake-model" in str(info.value)
    assert not no_retry.is_cached(model.entry)
    assert not no_retry.path_for(model.entry).exists()

    fake_hub.reset_requests()
    path = no_retry.pull(model.entry)

    bodies = fake_hub.body_requests()
    assert [(r.range, r.status, r.body_bytes) for r in bodies] == [
        (f"bytes={half}-", 206, FILE_SIZE - half)]
    assert path.read_bytes() == model.file.data
    assert no_retry.verify(model.entry).ok
    assert not _partials(Settings())


def test_dropped_connection_is_resumed_within_one_pull(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    fake_hub.cut_after(FILE_SIZE // 4, times=None)  # every response dies after a quarter

    path = store.pull(model.entry)

    ranges = [r.range for r in fake_hub.body_requests()]
    assert ranges == [None] + [f"bytes={FILE_SIZE // 4 * k}-" for k in (1, 2, 3, 4)]
    assert path.read_bytes() == model.file.data


def test_hub_that_never_sends_bytes_gives_a_resumable_error(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    fake_hub.cut_after(0, times=None)

    with pytest.raises(DownloadError, match="resume"):
        store.pull(model.entry)

    assert len(fake_hub.body_requests()) == 3  # the first try and two retries
    assert not store.is_cached(model.entry)


def test_one_flipped_byte_is_rejected_and_nothing_is_promoted(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    fake_hub.corrupt(FILE_SIZE // 3)

    with pytest.raises(IntegrityError, match="damaged"):
        store.pull(model.entry)
    assert not store.path_for(model.entry).exists()
    assert not store.is_cached(model.entry)
    assert store.list_cached() == []
    assert not _partials(Settings())

    fake_hub.corrupt(None)
    assert store.pull(model.entry).read_bytes() == model.file.data


def test_hub_announcing_a_wrong_sha256_is_rejected(
        fake_hub: FakeHub, store: ModelStore) -> None:
    entry = hub_entry()
    fake_hub.add_file(entry.source.repo or "", entry.source.file or "", b"x" * 4096,
                      sha256="ab" * 32)

    with pytest.raises(IntegrityError):
        store.pull(entry)
    assert not store.path_for(entry).exists()
    assert not _partials(Settings())


@pytest.mark.parametrize("announced", [4096 - 1, 4096 + 1])
def test_hub_announcing_a_wrong_size_is_rejected(
        fake_hub: FakeHub, store: ModelStore, announced: int) -> None:
    entry = hub_entry()
    fake_hub.add_file(entry.source.repo or "", entry.source.file or "", b"y" * 4096,
                      size=announced)

    with pytest.raises(IntegrityError, match="bytes"):
        store.pull(entry)
    assert not store.path_for(entry).exists()
    assert not store.is_cached(entry)


def test_pinned_sha256_that_the_hub_does_not_match_is_refused_before_downloading(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish(sha256="0" * 64)

    with pytest.raises(IntegrityError, match="pins"):
        store.pull(model.entry)
    assert fake_hub.body_requests() == []


def test_pinned_sha256_that_matches_is_accepted(
        fake_hub: FakeHub, store: ModelStore) -> None:
    data = b"pinned model bytes" * 1000
    entry = hub_entry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    fake_hub.add_file(entry.source.repo or "", entry.source.file or "", data)

    assert store.pull(entry).read_bytes() == data
    assert store.is_cached(entry)


def test_missing_token_for_gated_repo_names_hf_token(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = publish()
    fake_hub.require_token("hf_good")

    with pytest.raises(HubAuthError, match="HF_TOKEN") as info:
        store.pull(model.entry)
    assert "401" in str(info.value)

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubAuthError, match="403"):
        store.pull(model.entry)

    monkeypatch.setenv("HF_TOKEN", "hf_good")
    assert store.pull(model.entry).read_bytes() == model.file.data


def test_token_is_not_sent_to_the_cdn_after_a_redirect(
        fake_hub_cdn: FakeHub, store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = hub_entry()
    data = b"z" * 200_000
    fake_hub_cdn.add_file(entry.source.repo or "", entry.source.file or "", data)
    fake_hub_cdn.require_token("hf_good")
    monkeypatch.setenv("HF_TOKEN", "hf_good")

    assert store.pull(entry).read_bytes() == data

    cdn = [r for r in fake_hub_cdn.requests if r.server == "cdn"]
    hub = [r for r in fake_hub_cdn.requests if r.server == "hub" and "/resolve/" in r.path]
    assert [r.method for r in cdn] == ["GET"] and cdn[0].authorization is None
    assert hub and all(r.authorization == "Bearer hf_good" for r in hub)


def test_file_missing_on_the_hub_says_which_file(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    publish()
    entry = hub_entry(file="no-such-file.gguf")

    with pytest.raises(DownloadError, match=r"no-such-file\.gguf"):
        store.pull(entry)


def test_unreachable_hub_gives_a_download_error_naming_the_retry(
        store: ModelStore) -> None:
    with pytest.raises(DownloadError, match="localloom pull fake-model"):
        store.pull(hub_entry())  # HF_ENDPOINT is 127.0.0.1:9 (nothing listens)


def test_not_enough_disk_space_is_reported_before_downloading(
        fake_hub: FakeHub, store: ModelStore) -> None:
    entry = hub_entry()
    fake_hub.add_file(entry.source.repo or "", entry.source.file or "", b"q" * 1000,
                      size=10**18)

    with pytest.raises(DiskSpaceError, match="LOCALLOOM_HOME"):
        store.pull(entry)
    assert fake_hub.body_requests() == []


def test_partial_of_an_older_commit_is_discarded_when_the_branch_moves(
        fake_hub: FakeHub, publish: Callable[..., Published]) -> None:
    model = publish()
    fake_hub.cut_after(FILE_SIZE // 2, times=1)
    no_retry = ModelStore(Settings(), retries=0)
    with pytest.raises(DownloadError):
        no_retry.pull(model.entry)

    newer = fake_hub.add_file(model.file.repo, model.file.path, b"new" * 50_000,
                              new_commit=True)
    fake_hub.reset_requests()
    path = no_retry.pull(model.entry)

    assert [r.range for r in fake_hub.body_requests()] == [None]
    assert path.read_bytes() == newer.data


def test_force_downloads_again(
        fake_hub: FakeHub, publish: Callable[..., Published], store: ModelStore) -> None:
    model = publish()
    store.pull(model.entry)
    fake_hub.reset_requests()

    store.pull(model.entry)
    assert fake_hub.requests == []  # cached: not even a HEAD
    store.pull(model.entry, force=True)
    assert len(fake_hub.body_requests()) == 1
    assert store.verify(model.entry).ok
