"""Saved results across kills: processes writing the history die at random points.

One or two real processes (history_writer.py) save results into the user's SQLite history and
print each id once the save returned; the test kills them (SIGKILL, sometimes SIGTERM) at a
seeded random moment, which may fall in the import, in the first open and its migrations, or
in the middle of a write. Then it reopens the history as LocalLoom does and checks: SQLite's
`PRAGMA integrity_check` and the FTS index's own check pass, the schema is complete, and
every id a writer reported is there. The loop is seeded; the long run is marked slow and
writes its figures into docs/RELIABILITY.md (section "Saved results across kills").
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from reliability_figures import Row, Section

from localloom.config import Settings
from localloom.history import HistoryStore
from localloom.history.migrations import MIGRATIONS

WRITER = Path(__file__).with_name("history_writer.py")
SEED = 20261125
KILLED = "Process killed while saving results"

SECTION = Section(
    key="history_kill",
    heading="## Saved results across kills",
    intro="""
A result the history reported as saved must survive the process being killed right after,
and a kill at any moment must leave a database that opens. The history runs SQLite in WAL
mode with `synchronous = FULL`, writes each save (or import) in one `BEGIN IMMEDIATE`
transaction, and applies each migration in the transaction that records it.
`tests/adversarial/test_history_kill.py` kills real writer processes at seeded random moments
(in the first open and its migrations too) and reopens the file. Rows lost = ids a writer
printed after its save returned that are missing after the reopen.
""",
    rows=(
        Row(KILLED, "WAL + `synchronous = FULL`; one transaction per save or import; "
            "migrations recorded in the transaction that applies them",
            "`test_killed_writers_lose_no_saved_result_and_leave_a_sound_database`"),
    ),
)


class _Writer:
    """A history_writer.py process and the ids it reported as committed."""

    def __init__(self, seed: int) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WRITER), str(seed)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=os.environ.copy())
        self.ready = threading.Event()
        self.ids: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line == "READY":
                self.ready.set()
            elif line:
                self.ids.append(line)

    def kill(self, sig: int) -> str:
        """Send ``sig``, reap the process, and return its stderr (empty after SIGKILL)."""
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        self._reader.join(timeout=10)
        return err


def _db_checks(db: Path) -> tuple[str, str | None, set[str]]:
    """integrity_check's verdict, the FTS check's error (None if sound), and the saved ids."""
    conn = sqlite3.connect(db)
    try:
        verdict = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        fts_error = None
        try:
            conn.execute("INSERT INTO results_fts(results_fts) VALUES ('integrity-check')")
        except sqlite3.DatabaseError as exc:
            fts_error = str(exc)
        ids = {r[0] for r in conn.execute("SELECT id FROM results")}
    finally:
        conn.close()
    return verdict, fts_error, ids


def _one_run(rng: random.Random, run: int, tally: Counter[str], reported: set[str]) -> None:
    db = Settings().data_dir / "history.sqlite3"
    fresh = not db.exists()
    writers = [_Writer(SEED + run * 10 + k) for k in range(rng.choice([1, 1, 2]))]
    if fresh:
        # Kill while the database is being created and migrated.
        deadline = time.monotonic() + 60
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(rng.uniform(0.0, 0.05))
    else:
        for writer in writers:
            assert writer.ready.wait(60), writer.proc.stderr
        time.sleep(rng.uniform(0.0, 1.5))
    sig = signal.SIGTERM if run % 3 == 2 else signal.SIGKILL
    for writer in writers:
        err = writer.kill(sig)
        assert "Traceback" not in err, err
        tally["SIGTERM" if sig == signal.SIGTERM else "SIGKILL"] += 1
        tally["killed before the store was open"] += not writer.ready.is_set()
        reported.update(writer.ids)

    with HistoryStore(db) as store:  # reopening recovers the WAL and finishes migrations
        assert [m[0] for m in store.migrations()] == [m.number for m in MIGRATIONS]
        count = store.count()
    verdict, fts_error, present = _db_checks(db)
    tally["integrity_check failures"] += verdict != "ok"
    tally["FTS index failures"] += fts_error is not None
    assert verdict == "ok" and fts_error is None, (verdict, fts_error)
    assert count == len(present)
    lost = reported - present
    assert not lost, f"{len(lost)} reported rows missing after run {run}"
    tally["rows reported saved"] = len(reported)
    tally["rows found"] = count
    tally["runs"] += 1


@pytest.mark.parametrize("runs", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_killed_writers_lose_no_saved_result_and_leave_a_sound_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: int) -> None:
    rng = random.Random(SEED + runs)
    tally: Counter[str] = Counter()
    reported: set[str] = set()
    homes = 0
    for run in range(runs):
        if run % 4 == 0:  # now and then a new database, so kills land in its creation too
            homes += 1
            monkeypatch.setenv("LOCALLOOM_HOME", str(tmp_path / f"home{homes}"))
            reported = set()
            tally["rows reported saved (earlier databases)"] += tally["rows reported saved"]
            tally["rows found (earlier databases)"] += tally["rows found"]
            tally["rows reported saved"] = tally["rows found"] = 0
        _one_run(rng, run, tally, reported)

    assert tally["runs"] == runs
    if runs >= 10:
        saved = tally["rows reported saved"] + tally["rows reported saved (earlier databases)"]
        found = tally["rows found"] + tally["rows found (earlier databases)"]
        SECTION.record({KILLED: (
            f"{runs} runs (seed {SEED + runs}) on {homes} databases, 1 or 2 writers each: "
            f"{tally['SIGKILL']} SIGKILL and {tally['SIGTERM']} SIGTERM, "
            f"{tally['killed before the store was open']} while creating and migrating a new "
            "database; "
            f"{saved} rows reported saved, {found} found after reopening, 0 rows lost; "
            f"{tally['integrity_check failures']} `integrity_check` failures, "
            f"{tally['FTS index failures']} FTS index failures; every reopen had the full schema"
        )})
