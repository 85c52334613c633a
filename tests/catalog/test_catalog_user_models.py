"""User models from models.toml: bad entries are reported precisely and hide nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localloom.catalog import Catalog
from localloom.config import Settings
from localloom.errors import ConfigError, ModelNotFoundError


def _entry(model_id: str, path: str = "tiny.gguf", extra: str = "") -> str:
    return f"""
[[model]]
id = "{model_id}"
display_name = "{model_id} model"
download_size = 503584
ram_min_gb = 0.5
ram_max_gb = 1
context_length = 2048
{extra}
[model.source]
kind = "local"
path = "{path}"
"""


def _config_toml(home: Path, text: str) -> Path:
    path = home / "config" / "models.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_entry_is_reported_by_file_entry_and_field_and_others_still_list(
        isolated_home: Path) -> None:
    bad = _entry("broken").replace("ram_min_gb = 0.5", 'ram_min_gb = "lots"')
    path = _config_toml(isolated_home, _entry("first") + bad + _entry("last"))
    catalog = Catalog(Settings())
    ids = [e.id for e in catalog.entries()]
    assert "first" in ids and "last" in ids and "broken" not in ids
    assert "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC" in ids
    [problem] = catalog.problems
    assert (problem.file, problem.entry, problem.field) == (str(path), "broken", "ram_min_gb")
    assert "broken" in str(problem) and "ram_min_gb" in str(problem)


def test_entry_without_id_and_unknown_fields_are_named_by_position_and_field(
        isolated_home: Path) -> None:
    text = _entry("ok") + _entry("x").replace('id = "x"', "") + _entry("typo", extra="colour = 1")
    _config_toml(isolated_home, text)
    problems = {(p.entry, p.field) for p in Catalog(Settings()).problems}
    assert ("#2", "id") in problems
    assert ("typo", "colour") in problems


def test_toml_syntax_error_in_one_file_hides_no_other_file(
        isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = _config_toml(isolated_home, "[[model]\nid = 'x'\n")
    extra = tmp_path / "more.toml"
    extra.write_text(_entry("from-extra-file"), encoding="utf-8")
    monkeypatch.setenv("LOCALLOOM_MODELS", os.pathsep.join([str(extra), str(tmp_path / "nope")]))
    catalog = Catalog(Settings())
    assert "from-extra-file" in catalog and "starter" in catalog
    by_file = {p.file: p for p in catalog.problems}
    assert "not valid TOML" in by_file[str(broken)].problem
    assert "not found" in by_file[str(tmp_path / "nope")].problem


def test_relative_local_paths_resolve_against_the_toml_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "models.toml").write_text(_entry("rel", path="weights/m.gguf"), encoding="utf-8")
    monkeypatch.setenv("LOCALLOOM_MODELS", str(folder / "models.toml"))
    entry = Catalog(Settings()).get("rel")
    assert entry.source.path == str((folder / "weights" / "m.gguf").resolve())
    assert entry.origin == str(folder / "models.toml") and "user" in entry.tags


def test_duplicate_ids_are_reported_and_the_first_wins(isolated_home: Path) -> None:
    seed = "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC"
    _config_toml(isolated_home, _entry(seed) + _entry("twice") + _entry("twice")
                 + _entry("aliased", extra='aliases = ["starter", "mine"]'))
    catalog = Catalog(Settings())
    assert catalog.get(seed).origin == "builtin"
    fields = sorted((p.entry, p.field) for p in catalog.problems)
    assert fields == [("TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC", "id"), ("aliased", "aliases"),
                      ("twice", "id")]
    assert catalog.get("starter").id == "gemma3-270m-starter"
    assert catalog.get("mine").id == "aliased"


def test_ids_are_case_sensitive_and_unknown_ids_get_suggestions() -> None:
    catalog = Catalog(Settings())
    with pytest.raises(ModelNotFoundError) as info:
        catalog.get("tinyllama-1.1b-chat-v1.0-q4f16_1-mlc")
    assert info.value.suggestions[0] == "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC"
    assert "`localloom models`" in str(info.value) and "Did you mean" in str(info.value)
    with pytest.raises(ModelNotFoundError) as info:
        catalog.get("gemma-2b-it-q4f16-MLC")
    assert "gemma-2b-it-q4f16_1-MLC" in info.value.suggestions
    with pytest.raises(ModelNotFoundError) as info:
        catalog.get("completely-unrelated")
    assert info.value.suggestions == []


def test_starter_alias_finds_the_starter() -> None:
    assert Catalog(Settings()).get("starter").id == "gemma3-270m-starter"


def test_added_model_is_appended_keeping_comments_and_can_be_removed(
        isolated_home: Path, tiny_gguf: Path) -> None:
    path = _config_toml(isolated_home, "# my models\n" + _entry("kept"))
    catalog = Catalog(Settings())
    new = catalog.get("kept").model_copy(update={"id": "added", "origin": "x", "tags": ()})
    assert catalog.add_user_model(new) == path
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# my models\n") and 'id = "added"' in text
    assert Catalog(Settings()).get("added").source.path == new.source.path
    with pytest.raises(ConfigError, match="already has a model named 'added'"):
        catalog.add_user_model(new)
    catalog.remove_user_model("added")
    assert "added" not in Catalog(Settings()) and "kept" in Catalog(Settings())
    with pytest.raises(ConfigError, match="built in"):
        catalog.remove_user_model("starter")


def test_adding_to_a_broken_models_toml_refuses_and_keeps_the_file(isolated_home: Path) -> None:
    path = _config_toml(isolated_home, "[[model]\n")
    catalog = Catalog(Settings())
    entry = catalog.get("starter").model_copy(update={"id": "new-one", "aliases": ()})
    with pytest.raises(ConfigError, match="not valid TOML"):
        catalog.add_user_model(entry)
    assert path.read_text(encoding="utf-8") == "[[model]\n"
