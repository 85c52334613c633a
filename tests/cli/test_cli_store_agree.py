"""Point 11: failed pulls leave no folder; `verify`, `doctor` and `rm` agree about what is in
the cache; every offline message names a command that works when run."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import localloom

from fakehub import FakeHub
from localloom.config import Settings

REPO, FILE = "fake-org/fake-model-GGUF", "fake-model.Q4_0.gguf"
MODELS_TOML = f"""
[[model]]
id = "fake-model"
display_name = "Fake model"
download_size = 600000
ram_min_gb = 0.1
ram_max_gb = 0.2
context_length = 2048
[model.source]
kind = "hub"
repo = "{REPO}"
file = "{FILE}"
"""


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path) -> Iterator[FakeHub]:
    """A fake Hub serving the tiny GGUF, and a models.toml entry for it."""
    with FakeHub() as fake:
        fake.add_file(REPO, FILE, tiny_gguf.read_bytes())
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        toml = Settings().config_dir / "models.toml"
        toml.parent.mkdir(parents=True, exist_ok=True)
        toml.write_text(MODELS_TOML, encoding="utf-8")
        yield fake


def _cache_check() -> dict[str, str]:
    result = localloom("doctor", "--model", "", "--json", env={"LOCALLOOM_OFFLINE": "1"})
    return next(c for c in json.loads(result.stdout) if c["name"] == "Model cache")


def test_failed_pulls_leave_no_folder_and_all_three_commands_agree(hub: FakeHub) -> None:
    models = Settings().models_dir
    unreachable = localloom("pull", "fake-model", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert unreachable.returncode == 1 and "Could not reach the Hub" in unreachable.stderr
    hub.corrupt(1000)  # every byte arrives, but one is wrong: the sha256 check fails
    damaged = localloom("pull", "fake-model")
    assert damaged.returncode == 1 and "damaged" in damaged.stderr

    assert not models.exists() or list(models.iterdir()) == []
    verify = localloom("verify")
    assert verify.returncode == 0 and "nothing to verify" in verify.stdout
    assert _cache_check()["status"] == "ok"
    removed = localloom("rm", "fake-model")
    assert removed.returncode == 0 and "was not downloaded" in removed.stdout


def test_a_leftover_folder_is_reported_by_verify_and_doctor_and_removed_by_rm() -> None:
    # Files under a name no catalog entry has (an entry removed from models.toml).
    ghost = Settings().models_dir / "ghost-model"
    ghost.mkdir(parents=True)
    (ghost / "ghost.gguf").write_bytes(os.urandom(4096))

    verify = localloom("verify")
    assert verify.returncode == 1
    assert "ghost-model" in verify.stdout and "`localloom rm ghost-model`" in verify.stdout
    check = _cache_check()
    assert check["status"] == "fail" and "`localloom rm ghost-model`" in check["fix"]

    removed = localloom("rm", "ghost-model")  # the command both of them name works
    assert removed.returncode == 0, removed.stderr
    assert not ghost.exists()
    assert localloom("verify").returncode == 0 and _cache_check()["status"] == "ok"


def _named_command(message: str) -> list[str]:
    """The `ENV=0 localloom ...` command an error message tells the user to run."""
    match = re.search(r"`((?:\w+=\S+ )*localloom [^`]+)`", " ".join(message.split()))
    assert match, message
    return shlex.split(match.group(1))


def _run_named(words: list[str]) -> tuple[int, str]:
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    args = words[words.index("localloom") + 1:]
    result = localloom(*args, env=env)
    return result.returncode, result.stderr


def test_offline_pull_names_a_command_that_then_works(hub: FakeHub) -> None:
    offline = localloom("pull", "fake-model", env={"LOCALLOOM_OFFLINE": "1"})

    assert offline.returncode == 1 and hub.requests == []
    words = _named_command(offline.stderr)
    assert words == ["LOCALLOOM_OFFLINE=0", "localloom", "pull", "fake-model"]
    code, err = _run_named(words)
    assert code == 0, err


def test_offline_models_add_names_a_command_that_then_works(hub: FakeHub) -> None:
    add = ["models", "add", "--repo", REPO, "--file", FILE, "--id", "added-model"]
    offline = localloom(*add, env={"HF_HUB_OFFLINE": "1"})

    assert offline.returncode == 1 and hub.requests == []
    words = _named_command(offline.stderr)
    assert words[:2] == ["HF_HUB_OFFLINE=0", "localloom"]
    assert "pull added-model" not in " ".join(words)  # not an id the catalog lacks
    code, err = _run_named(words)
    assert code == 0, err
    assert "added-model" in localloom("models", "--json").stdout
