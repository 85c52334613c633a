"""Entries built from a GGUF header: context, template, size, RAM, and the trial-load hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from localloom.catalog import ModelSource, entry_from_gguf, id_from_filename
from localloom.errors import ModelLoadError


def test_entry_from_a_chat_gguf(tiny_gguf: Path) -> None:
    entry = entry_from_gguf(tiny_gguf, model_id="tiny")
    assert entry.id == "tiny" and entry.display_name == "tiny-test"
    assert entry.context_length == 2048 and entry.prompt_style == "chat"
    assert entry.download_size == tiny_gguf.stat().st_size
    assert entry.source.kind == "local" and entry.source.path == str(tiny_gguf.resolve())
    assert 0 < entry.ram_min_gb <= entry.ram_max_gb < 1
    assert "llama" in entry.description


def test_base_model_without_template_gets_completion_prompts(tiny_gguf_no_template: Path) -> None:
    entry = entry_from_gguf(tiny_gguf_no_template)
    assert entry.prompt_style == "completion"
    assert entry.id == "tiny-base"


def test_trial_load_hook_runs_on_the_file_and_its_failure_stops_the_add(tiny_gguf: Path) -> None:
    seen: list[Path] = []
    entry_from_gguf(tiny_gguf, trial_load=seen.append)
    assert seen == [tiny_gguf.resolve()]

    def refuse(path: Path) -> None:
        raise ModelLoadError(f"llama.cpp could not load {path}")

    with pytest.raises(ModelLoadError, match="could not load"):
        entry_from_gguf(tiny_gguf, trial_load=refuse)


def test_a_hub_source_is_kept(tiny_gguf: Path) -> None:
    source = ModelSource(repo="org/repo", file="tiny.gguf")
    assert entry_from_gguf(tiny_gguf, source=source).source == source


def test_corrupt_or_missing_files_are_model_load_errors(tmp_path: Path, tiny_gguf: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="truncated"):
        entry_from_gguf(cut)
    with pytest.raises(ModelLoadError, match="Cannot read"):
        entry_from_gguf(tmp_path / "missing.gguf")


def test_ids_from_file_names_are_valid() -> None:
    assert id_from_filename("/x/Llama-3.2-1B-Q4_K_M.gguf") == "Llama-3.2-1B-Q4_K_M"
    assert id_from_filename("My Model (v2).gguf") == "My-Model-v2-"
    assert id_from_filename("___.gguf") == "model"
