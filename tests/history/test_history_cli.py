"""`localloom history ...` as a user runs it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from localloom.cli import history as history_cli
from localloom.config import Settings
from localloom.history import HistoryStore, SavedResult


@pytest.fixture()
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    history_cli.register(root)
    return root


@pytest.fixture()
def saved() -> list[SavedResult]:
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
    records = [
        SavedResult(task="summarize", model="starter", original="The heron waits by the marsh.",
                    result="A patient bird.", source="https://example.org/heron",
                    created_at=t0, updated_at=t0),
        SavedResult(task="question", model="starter", original="Taxes rose again this year.",
                    result="Who pays the new taxes?", created_at=t0 + timedelta(hours=1),
                    updated_at=t0 + timedelta(hours=1)),
    ]
    with HistoryStore.for_settings(Settings()) as store:
        for r in records:
            store.save(r)
    return records


def test_list_shows_saved_results_newest_first(app: typer.Typer,
                                               saved: list[SavedResult]) -> None:
    result = CliRunner().invoke(app, ["history", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == [saved[1].id, saved[0].id]
    table = CliRunner().invoke(app, ["history", "list"])
    assert saved[0].id[:12] in table.stdout and "(2 of 2)" in table.stdout


def test_search_finds_a_result_by_a_word_of_its_original(app: typer.Typer,
                                                         saved: list[SavedResult]) -> None:
    result = CliRunner().invoke(app, ["history", "search", "heron", "--json"])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == [saved[0].id]


def test_search_with_stray_syntax_is_an_error_line_not_a_traceback(
        app: typer.Typer, saved: list[SavedResult]) -> None:
    result = CliRunner().invoke(app, ["history", "search", '"*"'])
    assert result.exit_code == 1
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_show_prints_the_full_result_by_id_prefix(app: typer.Typer,
                                                  saved: list[SavedResult]) -> None:
    result = CliRunner().invoke(app, ["history", "show", saved[0].id[:8]])
    assert result.exit_code == 0, result.output
    for text in ("A patient bird.", "The heron waits by the marsh.", "https://example.org/heron"):
        assert text in result.stdout
    missing = CliRunner().invoke(app, ["history", "show", "ffffffff"])
    assert missing.exit_code == 1 and "history list" in missing.stderr


def test_rm_deletes_and_reports_unknown_ids(app: typer.Typer, saved: list[SavedResult]) -> None:
    result = CliRunner().invoke(app, ["history", "rm", saved[0].id, "abcdef12"])
    assert result.exit_code == 1
    assert "'abcdef12'" in result.stderr
    with HistoryStore.for_settings(Settings()) as store:
        assert [r.id for r in store.list()] == [saved[1].id]


def test_export_to_a_file_and_import_into_a_fresh_history_round_trips(
        app: typer.Typer, saved: list[SavedResult], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "export.json"
    result = CliRunner().invoke(app, ["history", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(app, ["history", "export", "--output", str(out)])
    assert again.exit_code == 1 and "--force" in again.stderr  # never overwrites silently
    monkeypatch.setenv("LOCALLOOM_HOME", str(tmp_path / "other-home"))
    imported = CliRunner().invoke(app, ["history", "import", str(out)])
    assert imported.exit_code == 0, imported.output
    assert "Imported 2 result(s)" in imported.stdout
    with HistoryStore.for_settings(Settings()) as store:
        assert sorted(store.list(), key=lambda r: r.id) == sorted(saved, key=lambda r: r.id)


@pytest.mark.parametrize(("fmt", "expected"), [("md", "## Summarize"), ("csv", "id,task,model")])
def test_export_in_markdown_and_csv_to_stdout(app: typer.Typer, saved: list[SavedResult],
                                              fmt: str, expected: str) -> None:
    result = CliRunner().invoke(app, ["history", "export", "--format", fmt])
    assert result.exit_code == 0, result.output
    assert expected in result.stdout and "A patient bird." in result.stdout


def test_corrupt_history_file_is_an_error_naming_the_file(app: typer.Typer) -> None:
    path = Settings().data_dir / "history.sqlite3"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all" * 100)
    result = CliRunner().invoke(app, ["history", "list"])
    assert result.exit_code == 1
    assert "history.sqlite3" in result.stderr and "Move it aside" in result.stderr
    assert path.read_bytes() == b"not a database at all" * 100
