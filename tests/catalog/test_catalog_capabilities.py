"""Capability flags: one field on each entry, validated, derived for user models, and the
same answer in `localloom show` and `localloom models` (the APIs: tests/server/
test_capabilities_api.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from localloom.catalog import BUILTIN_ENTRIES, CAPABILITIES, Catalog, entry_from_gguf
from localloom.cli import app
from localloom.config import Settings

_HEX40, _HEX64 = re.compile(r"^[0-9a-f]{40}$"), re.compile(r"^[0-9a-f]{64}$")
NEW_2025 = {
    # id: what the model can do, as its maker documents it
    "Qwen3-0.6B-Q4_K_M": ("chat", "completion", "tools", "reasoning"),
    "Qwen3-1.7B-Q4_K_M": ("chat", "completion", "tools", "reasoning"),
    "Qwen3-4B-Q4_K_M": ("chat", "completion", "tools", "reasoning"),
    "gemma-3-1b-it-Q4_K_M": ("chat", "completion"),
    "gemma-3-4b-it-Q4_K_M": ("chat", "completion"),
    "Phi-4-mini-instruct-Q4_K_M": ("chat", "completion", "tools"),
    "SmolLM3-3B-Q4_K_M": ("chat", "completion", "tools", "reasoning"),
}


def _toml(home: Path, extra: str, prompt_style: str = "chat") -> Path:
    path = home / "config" / "models.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""
[[model]]
id = "mine"
display_name = "Mine"
download_size = 1000
ram_min_gb = 0.5
ram_max_gb = 1
context_length = 2048
prompt_style = "{prompt_style}"
{extra}
[model.source]
kind = "local"
path = "mine.gguf"
""", encoding="utf-8")
    return path


@pytest.mark.parametrize("model_id", list(NEW_2025))
def test_new_models_are_pinned_to_a_commit_hash_and_size_and_say_what_they_do(
        model_id: str) -> None:
    e = Catalog().get(model_id)
    assert "current" in e.tags and e.source.kind == "hub"
    assert _HEX40.match(e.source.revision), "pinned to a commit, not a branch"
    assert e.source.sha256 and _HEX64.match(e.source.sha256)
    assert e.source.size == e.download_size
    assert e.capabilities == NEW_2025[model_id]


def test_every_builtin_has_capabilities_in_one_order_and_embedders_are_marked() -> None:
    for e in BUILTIN_ENTRIES:
        assert e.capabilities, e.id
        assert list(e.capabilities) == sorted(e.capabilities, key=CAPABILITIES.index)
        assert e.has("embedding") == ("embedding" in e.tags or e.pooling is not None), e.id
    bge = Catalog().get("bge-small-en-v1.5")
    assert bge.capabilities == ("embedding",) and bge.capability_label == "embedding"
    assert Catalog().get("starter").capability_label == "completion only · embedding"
    assert Catalog().get("qwen3:4b").capability_label == "tools · reasoning"


def test_a_user_model_without_capabilities_gets_them_from_prompt_style_and_pooling(
        isolated_home: Path) -> None:
    _toml(isolated_home, "")
    assert Catalog(Settings()).get("mine").capabilities == ("chat", "completion")
    _toml(isolated_home, 'pooling = "mean"', prompt_style="completion")
    assert Catalog(Settings()).get("mine").capabilities == ("completion", "embedding")


def test_a_user_model_may_declare_capabilities_in_any_order(isolated_home: Path) -> None:
    _toml(isolated_home, 'capabilities = ["tools", "chat", "reasoning", "completion"]')
    catalog = Catalog(Settings())
    assert catalog.problems == []
    assert catalog.get("mine").capabilities == ("chat", "completion", "tools", "reasoning")


@pytest.mark.parametrize(("extra", "style", "says"), [
    ('capabilities = ["chat", "vision"]', "chat", "capabilities"),
    ('capabilities = ["completion", "tools"]', "chat", "need 'chat' too"),
    ('capabilities = ["chat", "completion"]', "completion", "need prompt_style 'chat'"),
    ('capabilities = ["chat", "chat"]', "chat", "twice"),
])
def test_wrong_capabilities_are_reported_on_the_entry_and_skip_it(
        isolated_home: Path, extra: str, style: str, says: str) -> None:
    path = _toml(isolated_home, extra, prompt_style=style)
    catalog = Catalog(Settings())
    assert "mine" not in catalog
    [problem] = catalog.problems
    assert problem.file == str(path) and problem.entry == "mine"
    assert says in f"{problem.field} {problem.problem}"


def test_an_added_gguf_gets_its_flags_from_its_chat_template(tiny_gguf: Path,
                                                             tiny_gguf_no_template: Path) -> None:
    chat = entry_from_gguf(tiny_gguf)
    assert chat.has("chat") and chat.has("completion")
    base = entry_from_gguf(tiny_gguf_no_template)
    assert base.capabilities == ("completion",)


def test_show_prints_the_entrys_capabilities() -> None:
    result = CliRunner().invoke(app, ["show", "qwen3:1.7b", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["capabilities"] == list(NEW_2025["Qwen3-1.7B-Q4_K_M"])
    result = CliRunner().invoke(app, ["show", "bge-small-en-v1.5"], env={"COLUMNS": "100"})
    line = next(x for x in result.stdout.splitlines() if "capabilities" in x)
    assert line.split()[-1] == "embedding"


def test_models_table_shows_flag_letters_with_a_legend_at_80_columns() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if line.split()[:1] == ["id"])
    assert "caps" in header.split()
    row = {line.split()[0]: line.split() for line in lines if line.split()}
    assert "TR" in row["Qwen3-4B-Q4_K_M"] and "T" in row["Phi-4-mini-instruct-Q4_K_M"]
    assert "E" in row["bge-small-en-v1.5"]
    assert any(line.startswith("caps: T calls tools, R reasons") for line in lines)
    assert any(line.startswith("Downloaded: none yet") for line in lines)
