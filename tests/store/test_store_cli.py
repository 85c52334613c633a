"""`localloom pull | ls | rm | verify | where` and has_model_in_cache / delete_model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import FILE_SIZE, Published
from typer.testing import CliRunner

from fakehub import FakeHub
from localloom.cli import app
from localloom.config import Settings
from localloom.store import delete_model, has_model_in_cache

MODELS_TOML = """
[[model]]
id = "{id}"
display_name = "Fake model"
download_size = {size}
ram_min_gb = 0.1
ram_max_gb = 0.2
context_length = 2048
[model.source]
kind = "hub"
repo = "{repo}"
file = "{file}"
"""


@pytest.fixture
def user_model(publish: Callable[..., Published]) -> Published:
    """A file on the fake Hub and a models.toml entry in the user's config dir for it."""
    model = publish("fake-model")
    toml = Settings().config_dir / "models.toml"
    toml.parent.mkdir(parents=True, exist_ok=True)
    toml.write_text(MODELS_TOML.format(id=model.entry.id, size=FILE_SIZE,
                                       repo=model.file.repo, file=model.file.path))
    return model


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "localloom", *args], capture_output=True,
                          text=True, timeout=120, env=os.environ.copy())


def test_pull_ls_where_verify_rm_round_trip(fake_hub: FakeHub, user_model: Published) -> None:
    runner = CliRunner()

    pulled = runner.invoke(app, ["pull", "fake-model"])
    assert pulled.exit_code == 0, pulled.output
    path = Settings().models_dir / "fake-model" / user_model.file.path
    assert path.read_bytes() == user_model.file.data

    listed = runner.invoke(app, ["ls"])
    assert listed.exit_code == 0 and "fake-model" in listed.output and "yes" in listed.output

    where = runner.invoke(app, ["where", "fake-model"])
    assert where.exit_code == 0 and where.stdout.strip() == str(path)
    assert runner.invoke(app, ["where"]).stdout.strip() == str(Settings().cache_dir)

    verified = runner.invoke(app, ["verify", "fake-model"])
    assert verified.exit_code == 0 and "intact" in verified.output
    assert runner.invoke(app, ["verify"]).exit_code == 0

    removed = runner.invoke(app, ["rm", "fake-model"])
    assert removed.exit_code == 0 and "Removed fake-model" in removed.output
    assert not path.exists()
    assert "No models downloaded" in runner.invoke(app, ["ls"]).output


def test_verify_exits_1_when_a_download_is_damaged(
        fake_hub: FakeHub, user_model: Published) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["pull", "fake-model"]).exit_code == 0
    path = Settings().models_dir / "fake-model" / user_model.file.path
    with path.open("r+b") as handle:
        handle.write(b"\0\0\0\0")

    result = runner.invoke(app, ["verify"])

    assert result.exit_code == 1
    assert "FAILED" in result.output and "localloom pull fake-model" in result.output


def test_offline_pull_without_a_copy_exits_1_naming_localloom_pull(
        fake_hub: FakeHub, user_model: Published, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALLOOM_OFFLINE", "1")

    result = _run("pull", "fake-model")

    assert result.returncode == 1
    assert "`LOCALLOOM_OFFLINE=0 localloom pull fake-model`" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fake_hub.requests == []


def test_unknown_model_exits_1_with_suggestions(fake_hub: FakeHub, user_model: Published) -> None:
    result = CliRunner().invoke(app, ["pull", "fake-modle"])

    assert result.exit_code == 1
    assert "fake-model" in result.output and "localloom models" in result.output


def test_gated_repo_without_token_exits_1_naming_hf_token(
        fake_hub: FakeHub, user_model: Published) -> None:
    fake_hub.require_token("hf_secret")

    result = _run("pull", "fake-model")

    assert result.returncode == 1
    assert "HF_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_has_model_in_cache_and_delete_model_by_id(
        fake_hub: FakeHub, user_model: Published) -> None:
    assert has_model_in_cache("fake-model") is False
    assert CliRunner().invoke(app, ["pull", "fake-model"]).exit_code == 0

    assert has_model_in_cache("fake-model", Settings()) is True
    assert delete_model("fake-model") is True
    assert has_model_in_cache("fake-model") is False
    assert delete_model("fake-model") is False


def test_rm_of_a_local_model_keeps_the_users_file(tmp_path: Path) -> None:
    weights = tmp_path / "mine.gguf"
    weights.write_bytes(b"GGUF")
    toml = Settings().config_dir / "models.toml"
    toml.parent.mkdir(parents=True, exist_ok=True)
    toml.write_text(MODELS_TOML.split("[model.source]")[0].format(id="mine", size=4)
                    + f'[model.source]\nkind = "local"\npath = "{weights}"\n')

    result = CliRunner().invoke(app, ["rm", "mine"])

    assert result.exit_code == 0 and "never deletes" in result.output
    assert weights.read_bytes() == b"GGUF"
