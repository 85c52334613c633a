"""Schemathesis over the live server's own OpenAPI schema: no input gets a 5xx.

``schemathesis run`` (its CLI, in a subprocess) reads ``GET /openapi.json`` from a real
``localloom serve`` with the bearer token and sends what it generates from the schema,
valid and invalid, to every operation: examples, coverage of each constraint's edges,
random fuzzing and stateful sequences. The only check is ``not_a_server_error``. The hooks
in schemathesis_hooks.py let generated requests name the loaded test model, so they reach
the engine too. The server's access log is checked as well: it must show no 5xx.

The ~200-case run is quick; the run of at least 2,000 cases is marked slow and writes its
figures into docs/RELIABILITY.md (section "Overload and faults").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_attacks import O_FUZZ, OVERLOAD, rss_mib, start_isolated

from server.server_harness import LiveServer

HERE = Path(__file__).resolve().parent
SEED = 20261125
_STATUS_RE = re.compile(r'HTTP/1\.[01]" (\d{3})')


@pytest.fixture(scope="module")
def target(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of its own, on its own copy of the model (fuzzed deletes touch nothing else)."""
    home = tmp_path_factory.mktemp("fuzz")
    model = home / "tiny.gguf"
    shutil.copyfile(tiny_gguf, model)
    # The embedding model is the test model, which cannot embed: /v1/embeddings and
    # semantic history searches answer 400 at once instead of loading the starter.
    live = start_isolated(home / "home", model, {"LOCALLOOM_N_PARALLEL": "4",
                                                 "LOCALLOOM_MAX_QUEUE": "16",
                                                 "LOCALLOOM_EMBEDDING_MODEL": "tiny"})
    yield live
    assert live.stop() == 0


def _schemathesis(live: LiveServer, report: Path, args: list[str]) -> dict[str, object]:
    cli = Path(sys.executable).with_name("schemathesis")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [str(cli), "run", f"{live.base_url}openapi.json",
         "--header", f"Authorization: Bearer {live.token}",
         "--checks", "not_a_server_error", "--seed", str(SEED), "--workers", "1",
         "--request-timeout", "120", "--suppress-health-check", "all",
         "--report", "json", "--report-json-path", str(report), *args],
        env=env, cwd=report.parent, capture_output=True, text=True, timeout=3000)
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result: dict[str, object] = json.loads(report.read_text())
    result["output"] = run.stdout[-4000:] + run.stderr[-2000:]
    return result


def _statuses(live: LiveServer) -> Counter[int]:
    return Counter(int(s) for s in _STATUS_RE.findall(live.logs()))


@pytest.mark.parametrize(("args", "least"), [
    (["--phases", "fuzzing", "--max-examples", "32"], 180),
    pytest.param(["--max-examples", "250"], 2000, marks=pytest.mark.slow),
])
def test_schemathesis_finds_no_server_error(target: LiveServer, tmp_path: Path,
                                            args: list[str], least: int) -> None:
    before_statuses = _statuses(target)
    before_rss = rss_mib(target)
    result = _schemathesis(target, tmp_path / "report.json", args)
    cases = result["test_cases"]
    assert isinstance(cases, dict)
    statuses = _statuses(target) - before_statuses
    server_errors = sum(n for status, n in statuses.items() if status >= 500 and status != 503)
    assert result["failures"] == [], result["output"]
    assert result["errors"] == [], result["output"]
    assert result["exit_code"] == 0, result["output"]
    assert cases["generated"] >= least, result["output"]
    assert server_errors == 0, statuses
    assert sum(statuses.values()) >= least  # the cases did reach the server
    growth = rss_mib(target) - before_rss
    if least >= 2000:
        OVERLOAD.record({O_FUZZ: (
            f"{cases['generated']} cases (schemathesis {result['schemathesis_version']}, seed "
            f"{SEED}, all phases, up to 250 per operation, valid and invalid) over the 13 "
            f"operations; {sum(statuses.values())} requests reached the server: "
            + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
            + f"; 0 5xx, 0 check failures; RSS {growth:+.1f} MiB")})
