"""Point 9: `localloom pull hf.co/ORG/REPO[:QUANT]` against a fake Hub (a real HTTP server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import localloom

from fakehub import FakeHub, RequestRecord
from localloom.catalog import Catalog
from localloom.config import Settings

REPO = "tiny-org/Tiny-Chat-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path) -> Iterator[FakeHub]:
    """A fake Hub with a GGUF repo in three quantizations (and a vision projector)."""
    data = tiny_gguf.read_bytes()
    with FakeHub() as fake:
        for name in ("tiny-chat.Q8_0.gguf", "tiny-chat.Q4_K_M.gguf", "tiny-chat.IQ4_XS.gguf",
                     "mmproj-tiny-chat-f16.gguf", "README.md"):
            fake.add_file(REPO, name, data)
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


def _downloads(hub: FakeHub) -> list[RequestRecord]:
    """File bodies the Hub sent (listing the repo is not a download)."""
    return [r for r in hub.body_requests() if "/resolve/" in r.path]


def test_pull_by_reference_picks_q4_k_m_verifies_and_adds_the_model(hub: FakeHub) -> None:
    result = localloom("pull", f"hf.co/{REPO}")

    assert result.returncode == 0, result.stderr
    entry = Catalog(Settings()).get(f"hf.co/{REPO}:Q4_K_M")  # the reference is an alias
    assert entry.id == "tiny-chat.Q4_K_M" and entry.source.file == "tiny-chat.Q4_K_M.gguf"
    assert entry.source.sha256 is not None and entry.prompt_style == "chat"
    assert [r.path.rsplit("/", 1)[1] for r in _downloads(hub)] == ["tiny-chat.Q4_K_M.gguf"]
    listed = localloom("ls").stdout
    assert "tiny-chat.Q4_K_M" in listed and "yes" in listed
    # Pulling the same reference again downloads nothing and adds nothing.
    hub.reset_requests()
    again = localloom("pull", f"hf.co/{REPO}:Q4_K_M")
    assert again.returncode == 0 and _downloads(hub) == []
    assert len([e for e in Catalog(Settings()).entries() if e.source.repo == REPO]) == 1


def test_pull_with_a_quant_takes_that_file(hub: FakeHub) -> None:
    result = localloom("pull", f"https://huggingface.co/{REPO}:q8_0")

    assert result.returncode == 0, result.stderr
    assert Catalog(Settings()).get(f"hf.co/{REPO}:Q8_0").source.file == "tiny-chat.Q8_0.gguf"


def test_a_missing_quant_lists_what_the_repo_has(hub: FakeHub) -> None:
    result = localloom("pull", f"hf.co/{REPO}:Q5_K_M")

    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "IQ4_XS, Q4_K_M, Q8_0" in message
    assert f"`localloom pull hf.co/{REPO}:Q4_K_M`" in message
    assert _downloads(hub) == [] and not Settings().models_dir.exists()


def test_an_unknown_repo_says_to_check_the_name(hub: FakeHub) -> None:
    result = localloom("pull", "hf.co/tiny-org/No-Such-GGUF")

    assert result.returncode == 1
    assert "tiny-org/No-Such-GGUF" in result.stderr and "HF_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_download_that_fails_verification_adds_nothing_and_leaves_no_folder(
        hub: FakeHub) -> None:
    hub.corrupt(1000)

    result = localloom("pull", f"hf.co/{REPO}")

    assert result.returncode == 1 and "damaged" in result.stderr
    assert not (Settings().config_dir / "models.toml").exists()
    assert not Settings().models_dir.exists() or not any(Settings().models_dir.iterdir())


def test_a_file_llama_cpp_cannot_load_is_refused_and_removed(hub: FakeHub) -> None:
    hub.add_file("tiny-org/Broken-GGUF", "broken.Q4_K_M.gguf", b"GGUF" + os.urandom(4096))

    result = localloom("pull", "hf.co/tiny-org/Broken-GGUF")

    assert result.returncode == 1 and "GGUF" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (Settings().config_dir / "models.toml").exists()
    assert not Settings().models_dir.exists() or not any(Settings().models_dir.iterdir())
