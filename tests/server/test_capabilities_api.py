"""Capability flags over HTTP: the management API's `/api/models` and Ollama's `/api/show`
read the same catalog field as `localloom show` and `localloom models`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server_harness import LiveServer, start_server


@pytest.fixture(scope="module")
def caps_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    extra = f"""
[[model]]
id = "thinker"
display_name = "Thinker"
download_size = 1000
ram_min_gb = 0.5
ram_max_gb = 1
context_length = 2048
capabilities = ["chat", "completion", "tools", "reasoning"]
[model.source]
kind = "local"
path = "{tiny_gguf}"
"""
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf, extra_toml=extra)
    yield live
    live.stop()


def test_management_and_ollama_apis_report_the_same_flags(caps_server: LiveServer) -> None:
    with caps_server.http() as http:
        models = {m["id"]: m for m in http.get("/api/models").json()["models"]}
        shown = http.post("/api/show", json={"model": "thinker"}).json()
    thinker = models["thinker"]
    assert thinker["capabilities"] == ["chat", "completion", "tools", "reasoning"]
    assert thinker["capability_label"] == "tools · reasoning"
    assert models["tiny"]["capability_label"] == ""
    assert models["bge-small-en-v1.5"]["capabilities"] == ["embedding"]
    # Ollama's names: no "chat", "thinking" for reasoning.
    assert shown["capabilities"] == ["completion", "tools", "thinking"]
