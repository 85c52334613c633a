"""`localloom run` and `localloom chat` on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from localloom.cli import app


@pytest.fixture(autouse=True)
def _small_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALLOOM_N_THREADS", "1")
    monkeypatch.setenv("LOCALLOOM_N_PARALLEL", "2")
    monkeypatch.setenv("LOCALLOOM_N_CTX", "256")


def test_run_streams_the_answer_and_verbose_prints_speed(tiny_gguf: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(tiny_gguf), "hello the cat",
                                      "--max-tokens", "6", "--temperature", "0", "--verbose"])
    assert result.exit_code == 0, result.output
    assert "tokens/s" in result.output
    again = CliRunner().invoke(app, ["run", str(tiny_gguf), "hello the cat",
                                     "--max-tokens", "6", "--temperature", "0"])
    assert again.output.strip() and again.output.strip() in result.output


def test_run_raw_continues_the_prompt(tiny_gguf: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(tiny_gguf), "the cat", "--raw",
                                      "--max-tokens", "4"])
    assert result.exit_code == 0, result.output


def test_run_with_a_broken_model_prints_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    result = CliRunner().invoke(app, ["run", str(bad), "hi"])
    assert result.exit_code == 1
    assert "not a usable GGUF model" in result.output and "pull it again" in result.output


def test_chat_repl_answers_resets_shows_stats_and_exits(tiny_gguf: Path) -> None:
    result = CliRunner().invoke(app, ["chat", str(tiny_gguf), "--max-tokens", "5",
                                      "--temperature", "0"],
                                input="hello\n/stats\n/reset\nthe cat\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "/reset" in result.output  # the help line
    assert "tokens/s" in result.output
    assert "Conversation cleared." in result.output
