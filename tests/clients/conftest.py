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

from server_harness import LiveServer, start_server

from localloom.testing import write_tiny_gguf
from localloom.testing.gguf import QWEN25_TOOLS_TEMPLATE, THINKING_TEMPLATE

TOOLS_MODEL = "qwen-tiny"  # the tiny model with Qwen 2.5's template (tools in the template)
THINKER = "thinker-tiny"  # the tiny model with a thinking template (the prompt opens <think>)

# litellm fetches its model price list from GitHub on import unless told to use its own copy
# (the tests run offline).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real `localloom serve` with the tiny model as "tiny", TOOLS_MODEL and THINKER."""
    models = tmp_path_factory.mktemp("models")
    extra = {TOOLS_MODEL: write_tiny_gguf(models / "qwen.gguf",
                                          chat_template=QWEN25_TOOLS_TEMPLATE),
             THINKER: write_tiny_gguf(models / "thinker.gguf", chat_template=THINKING_TEMPLATE)}
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf, extra_models=extra)
    yield live
    live.stop()
