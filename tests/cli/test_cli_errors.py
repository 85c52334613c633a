"""The one CLI error printer (localloom.cli._errors): a red `error:` line on stderr, exit 1."""

from __future__ import annotations

import pytest
import typer

from localloom.cli._errors import cli_errors, fail, print_error
from localloom.errors import ModelNotFoundError


def test_print_error_keeps_brackets_and_long_lines(capsys: pytest.CaptureFixture[str]) -> None:
    message = "Cannot open [models] file " + "/very/long/path" * 10 + ". Fix it."
    print_error(message)
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"  # markup escaped, one line (soft wrap)


def test_cli_errors_and_fail_exit_1_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info, cli_errors():
        raise ModelNotFoundError("nope", [])
    assert info.value.exit_code == 1
    assert capsys.readouterr().err.startswith("error: Model 'nope' is not in the catalog.")
    exit_ = fail(ModelNotFoundError("other", []))
    assert exit_.exit_code == 1
    assert "other" in capsys.readouterr().err
