"""Engines on the tiny real GGUF models (llama.cpp runs them in milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import make_settings

from localloom.engine import Engine


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine with the tiny chat model loaded: 8 sequences of 512 tokens."""
    with Engine(make_settings(tmp_path_factory.mktemp("home"))) as eng:
        eng.reload(str(tiny_gguf))
        yield eng
