"""Fixtures: a live server per test module, and fresh homes for servers started in a test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_harness import LiveServer, start_server


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server per test module, default settings plus an allowed extension origin."""
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf, env={
        "LOCALLOOM_ALLOWED_ORIGINS": '["chrome-extension://abcdefghijklmnop"]'})
    yield live
    live.stop()


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    """An empty LOCALLOOM_HOME for a server started inside one test."""
    home = tmp_path / "serve"
    home.mkdir()
    return home
