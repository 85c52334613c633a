"""Client test suites against a live server: LangChain's standard chat-model tests (their own
starter server) and the real clients of Ollama's API, the Responses API and litellm (one
tiny-model server per module, the ``server`` fixture)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))

from server_harness import LiveServer, start_server  # noqa: E402  (found through sys.path)

# litellm fetches its model price list from GitHub on import unless told to use its own copy
# (the tests run offline).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `localloom serve` with the tiny model registered as "tiny"."""
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf)
    yield live
    live.stop()
