"""Point 6: `--version`, help screens and tables as a user sees them at 80 columns."""

from __future__ import annotations

import re

import pytest
from cli_helpers import COLUMNS, lines_of, localloom

from localloom._version import __version__
from localloom.catalog import Catalog
from localloom.config import Settings
from localloom.history import HistoryStore, SavedResult

# Every command a user types, with its subcommands: none may show a `<bool>`-style type.
COMMANDS = [
    [], ["run"], ["pull"], ["ls"], ["models"], ["models", "add"], ["recommend"], ["serve"],
    ["doctor"], ["ps"], ["load"], ["show"], ["summarize"], ["history", "list"],
]


def test_version_prints_the_version_and_exits_0() -> None:
    result = localloom("--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"localloom {__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_shows_no_python_types(command: list[str]) -> None:
    result = localloom(*command, "--help")

    assert result.returncode == 0, result.stderr
    assert not re.search(r"<(bool|str|int|float|Path)>", result.stdout), result.stdout
    assert all(len(line) <= COLUMNS for line in lines_of(result.stdout))


def test_serve_help_keeps_sentences_whole_and_documents_the_new_flags() -> None:
    out = localloom("serve", "--help").stdout
    lines = lines_of(out)
    start = next(i for i, line in enumerate(lines) if "Prints a URL" in line)
    paragraph = []
    for line in lines[start:]:
        if not line.strip():
            break
        paragraph.append(line)
    # The paragraph is refilled to the terminal: only its last line may be short (the
    # docstring's own line breaks used to leave one-word lines such as " the").
    assert len(paragraph) >= 2
    assert all(len(line) >= COLUMNS - 20 for line in paragraph[:-1]), paragraph
    for flag in ("--ctx", "--parallel", "--threads"):
        assert flag in out


def test_models_table_keeps_every_id_whole_at_80_columns() -> None:
    out = localloom("models").stdout

    for entry in Catalog(Settings()).entries():
        assert any(entry.id in line.split() for line in lines_of(out)), (entry.id, out)
    assert all(len(line) <= COLUMNS for line in lines_of(out))


def test_history_list_is_one_readable_block_per_result_at_80_columns() -> None:
    model = "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC"
    source = "/home/someone/documents/articles/a-rather-long-file-name-for-an-article.txt"
    with HistoryStore.for_settings(Settings()) as store:
        saved = [store.save(SavedResult(
            task="summarize", model=model, original="The quick brown fox " * 30,
            result=f"Summary {n}: a fox jumps over a lazy dog, again and again, at length.",
            source=source)) for n in range(3)]

    result = localloom("history", "list")

    assert result.returncode == 0, result.stderr
    lines = lines_of(result.stdout)
    assert all(len(line) <= COLUMNS for line in lines)
    for record in saved:
        head = next(line for line in lines if line.startswith(record.id[:12]))
        assert model in head  # id, date, task and model on one line, the id first
    for n in range(3):  # each result's preview reads on one line, not in 8-letter slivers
        assert any(f"Summary {n}: a fox jumps over a lazy dog" in line for line in lines)
    # A long path keeps its end (the file name), never folded over two lines.
    assert sum(line.endswith("a-rather-long-file-name-for-an-article.txt") for line in lines) == 3
