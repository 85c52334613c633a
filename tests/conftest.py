"""Shared fixtures: isolated user dirs and tiny real GGUF models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localloom.testing import write_tiny_gguf


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point every user dir at tmp_path: no test touches the real home or the real Hub."""
    home = tmp_path / "llhome"
    home.mkdir()
    monkeypatch.setenv("LOCALLOOM_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("LOCALLOOM_MODELS", raising=False)
    monkeypatch.delenv("LOCALLOOM_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # An unreachable endpoint: a test that forgot its fake hub fails fast instead of
    # reaching the internet.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    yield home


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0.5 MB llama-architecture GGUF with a ChatML chat template."""
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_gguf_no_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model without a chat template (like the starter base model)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny-base.gguf",
                           chat_template=None)
