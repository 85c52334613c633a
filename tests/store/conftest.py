"""Fixtures for store tests: a fake Hub on 127.0.0.1 and entries that point at it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from store_helpers import FILE_SIZE, Published, hub_entry

from fakehub import FakeHub
from localloom.config import Settings
from localloom.store import ModelStore


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake Hub; HF_ENDPOINT points at it."""
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


@pytest.fixture
def fake_hub_cdn(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake Hub whose /resolve redirects to a CDN on another origin, like the real one."""
    with FakeHub(cdn=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


@pytest.fixture
def publish(fake_hub: FakeHub) -> Callable[..., Published]:
    """Put random bytes on the fake Hub and return the entry for them."""

    def _publish(model_id: str = "fake-model", size: int = FILE_SIZE, **source: object
                 ) -> Published:
        entry = hub_entry(model_id, **source)
        info = fake_hub.add_file(entry.source.repo or "", entry.source.file or "",
                                 os.urandom(size))
        return Published(entry, info)

    return _publish


@pytest.fixture
def store() -> ModelStore:
    """A store in the isolated LOCALLOOM_HOME, with quick retries."""
    return ModelStore(Settings(), retries=2, retry_wait=0.05, timeout=10)
