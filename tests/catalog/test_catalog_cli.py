"""`localloom models`, `models add`, `models rm-user` and `recommend` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakehub import FakeHub
from localloom.catalog import Catalog
from localloom.cli import app
from localloom.config import Settings

WIDE = {"COLUMNS": "220"}  # Rich wraps tables to the terminal width
SEED_ROWS = {
    "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC": ("~600 MB", "1–2 GB", "fast", "basic"),
    "gemma-2b-it-q4f16_1-MLC": ("~1.5 GB", "3–4 GB", "moderate", "good"),
    "Llama-2-7b-chat-hf-q4f16_1-MLC": ("~4 GB", "6–8 GB", "slower", "high"),
}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=WIDE)
    return result.exit_code, result.stdout, result.stderr


def test_models_lists_the_seed_models_with_readme_figures_and_fit() -> None:
    code, out, _ = _run("models")
    assert code == 0
    header = next(line for line in out.splitlines() if line.split()[:1] == ["id"])
    assert "fit" in header and "RAM" in header
    for model_id, figures in SEED_ROWS.items():
        row = next(line for line in out.splitlines() if model_id in line)
        for figure in figures:
            assert figure in row
        assert any(word in row for word in ("fits", "tight", "does not fit"))
    assert "gemma3-270m-starter" in out and "This machine:" in out


def test_models_json_has_entries_fit_and_hardware() -> None:
    code, out, _ = _run("models", "--json")
    assert code == 0
    doc = json.loads(out)
    by_id = {m["id"]: m for m in doc["models"]}
    assert set(SEED_ROWS) <= set(by_id)
    assert by_id["gemma3-270m-starter"]["fit"]["status"] in ("fits", "tight", "does_not_fit")
    assert doc["hardware"]["total_ram_gb"] > 0 and doc["problems"] == []


def test_models_warns_about_a_bad_entry_and_still_lists_the_rest(isolated_home: Path) -> None:
    toml = isolated_home / "config" / "models.toml"
    toml.parent.mkdir(parents=True)
    toml.write_text('[[model]]\nid = "half-done"\ndisplay_name = "x"\n', encoding="utf-8")
    code, out, err = _run("models")
    assert code == 0
    assert "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC" in out
    assert f"{toml}: model 'half-done', field 'download_size'" in err.replace("\n", "")
    assert "field 'source'" in err


def test_models_add_a_local_gguf_then_it_lists(isolated_home: Path, tiny_gguf: Path) -> None:
    code, out, err = _run("models", "add", str(tiny_gguf), "--id", "my-tiny")
    assert code == 0, err
    assert "Added my-tiny" in out
    entry = Catalog(Settings()).get("my-tiny")
    assert entry.context_length == 2048 and entry.prompt_style == "chat"
    assert entry.source.path == str(tiny_gguf.resolve())
    code, out, _ = _run("models")
    assert "my-tiny" in out
    code, _, err = _run("models", "add", str(tiny_gguf), "--id", "my-tiny")
    assert code == 1 and "already has a model named 'my-tiny'" in err
    code, out, _ = _run("models", "rm-user", "my-tiny")
    assert code == 0 and "my-tiny" not in Catalog(Settings())


def test_models_add_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"<html>404</html>")
    code, _, err = _run("models", "add", str(fake))
    assert code == 1 and "Not a GGUF file" in err
    assert "weights" not in Catalog(Settings())


def test_models_add_needs_a_path_or_repo_and_file() -> None:
    code, _, _ = _run("models", "add")
    assert code == 2
    code, _, _ = _run("models", "add", "--repo", "org/x")
    assert code == 2


def test_models_add_from_a_hub_repo_downloads_then_reads_the_header(
        monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path) -> None:
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.add_file("org/tiny-GGUF", "tiny.Q8_0.gguf", tiny_gguf.read_bytes())
        code, _, err = _run("models", "add", "--repo", "org/tiny-GGUF", "--file",
                            "tiny.Q8_0.gguf")
    assert code == 0, err
    entry = Catalog(Settings()).get("tiny.Q8_0")
    assert (entry.source.kind, entry.source.repo, entry.source.file) == (
        "hub", "org/tiny-GGUF", "tiny.Q8_0.gguf")
    assert entry.context_length == 2048 and entry.download_size == tiny_gguf.stat().st_size


def test_recommend_names_a_model_and_why() -> None:
    code, out, _ = _run("recommend", "--ram-gb", "4")
    assert code == 0
    assert "Recommended:" in out and "fits this machine" in out
    code, out, _ = _run("recommend", "--ram-gb", "0.6", "--json")
    assert json.loads(out)["id"] == "gemma3-270m-starter"


def test_models_add_refuses_a_file_llama_cpp_cannot_load(tmp_path: Path) -> None:
    """A GGUF with a valid header but an unknown architecture never reaches models.toml."""
    from localloom.testing.hostile import hostile_variants

    bad = next(v for v in hostile_variants() if v.name == "architecture-unknown")
    path = tmp_path / "odd.gguf"
    path.write_bytes(bad.data())
    result = CliRunner().invoke(app, ["models", "add", str(path), "--id", "odd-model"])
    assert result.exit_code == 1, result.output
    assert "odd-model" not in CliRunner().invoke(app, ["models", "--json"]).output
