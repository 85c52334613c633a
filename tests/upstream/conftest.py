"""Fixtures: real upstreams on 127.0.0.1 (a second `localloom serve`, a deliberately faulty
OpenAI-compatible server, llama-cpp-python's server, llama-server) and a front server that
serves their models through ``[[upstream]]`` entries (helpers in upstream_harness.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
sys.path.insert(0, str(Path(__file__).parent))

from server_harness import LiveServer, start_server

from localloom.testing import write_tiny_gguf
from localloom.testing.gguf import THINKING_TEMPLATE


@pytest.fixture(scope="module")
def back(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A second LocalLoom serving the tiny model (and a tiny thinking one, whose prompt
    opens ``<think>``): the upstream."""
    models = tmp_path_factory.mktemp("back-models")
    thinker = write_tiny_gguf(models / "thinker.gguf", chat_template=THINKING_TEMPLATE)
    live = start_server(tmp_path_factory.mktemp("back"), tiny_gguf,
                        extra_models={"thinker-tiny": thinker},
                        env={"LOCALLOOM_N_CTX": "8192"})
    yield live
    live.stop()
