"""Run the real `localloom` binary the way a user does: a subprocess at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LOCALLOOM = Path(sys.executable).with_name("localloom")  # the console script of this venv
COLUMNS = 80


def localloom(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
              timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``localloom ARGS`` with COLUMNS=80 and the test's LOCALLOOM_HOME (from the environment
    the autouse fixture set up); ``env`` adds or overrides variables."""
    full_env = {**os.environ, "COLUMNS": str(COLUMNS), "LOCALLOOM_N_THREADS": "1",
                "TERM": "dumb", **(env or {})}
    return subprocess.run([str(LOCALLOOM), *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=full_env,
                          stdin=None if stdin is not None else subprocess.DEVNULL)


def lines_of(text: str) -> list[str]:
    """Output lines without trailing blanks."""
    return [line.rstrip() for line in text.splitlines()]
