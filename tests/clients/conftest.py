"""Client test suites against a live server: LangChain's standard chat-model tests (their own
starter server) and the real clients of Ollama's API, the Responses API and litellm (one
tiny-model server per module, the ``server`` fixture)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))

from server_harness import LiveServer, start_server  # noqa: E402  (found through sys.path)


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `localloom serve` with the tiny model registered as "tiny"."""
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf)
    yield live
    live.stop()
