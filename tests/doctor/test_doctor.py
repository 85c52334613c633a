"""`localloom doctor` reports each check with a fix for failures."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from localloom.cli import app
from localloom.config import Settings
from localloom.doctor import CheckStatus, run_checks


def test_doctor_reports_python_llama_cpu_and_disk() -> None:
    names = {c.name: c for c in run_checks(Settings())}
    assert names["Python"].status is CheckStatus.OK
    assert "llama-cpp-python 0.3.36" in names["llama.cpp"].detail
    assert "physical cores" in names["CPU features"].detail
    assert names["Free disk"].status in (CheckStatus.OK, CheckStatus.FAIL)


def test_doctor_unreachable_hub_is_a_warning_with_a_fix() -> None:
    # conftest points HF_ENDPOINT at a closed port.
    hub = next(c for c in run_checks(Settings()) if c.name == "Hugging Face Hub")
    assert hub.status is CheckStatus.WARN
    assert "HF_ENDPOINT" in hub.fix


def test_doctor_offline_mode_skips_the_hub(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = next(c for c in run_checks(Settings()) if c.name == "Hugging Face Hub")
    assert hub.status is CheckStatus.SKIP


def test_doctor_json_output_lists_every_check() -> None:
    result = CliRunner().invoke(app, ["doctor", "--json"])
    checks = json.loads(result.stdout)
    assert {c["name"] for c in checks} >= {"Python", "llama.cpp", "Free RAM", "Free disk"}
    failing = [c for c in checks if c["status"] == "fail"]
    assert all(c["fix"] for c in failing)
    assert result.exit_code == (1 if failing else 0)
