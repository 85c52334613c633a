"""The saved-results store: survives restarts, finds, exports, imports, and fails safely."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from localloom.config import Settings
from localloom.errors import DatabaseCorruptError, DatabaseLockedError, InvalidRequestError
from localloom.history import HistoryStore, SavedResult
from localloom.history.migrations import MIGRATIONS


def _record(n: int = 0, **kw: object) -> SavedResult:
    base: dict[str, object] = {
        "task": "summarize",
        "model": "starter",
        "original": f"Original text number {n} about volcanoes and lava.",
        "result": f"Summary {n}: volcanoes erupt.",
    }
    base.update(kw)
    return SavedResult(**base)  # type: ignore[arg-type]


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "history.sqlite3"


def test_saved_results_survive_closing_and_reopening_the_store(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        saved = store.save(_record(1, source="https://example.org/a", language="en",
                                   parameters={"temperature": 0.7}))
    with HistoryStore(db_path) as reopened:
        assert reopened.count() == 1
        assert reopened.get(saved.id) == saved


def test_default_store_lives_in_the_user_data_dir() -> None:
    settings = Settings()
    with HistoryStore.for_settings(settings) as store:
        store.save(_record())
    assert (settings.data_dir / "history.sqlite3").is_file()


def test_search_finds_results_by_original_text_result_and_task(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        a = store.save(_record(1, original="The heron stood in the marsh.", result="A bird."))
        b = store.save(_record(2, original="Taxes rose.", result="Revenue of the treasury grew."))
        c = store.save(_record(3, task="question", original="x y z", result="Why?"))
        assert [r.id for r in store.search("heron")] == [a.id]
        assert [r.id for r in store.search("treasury")] == [b.id]
        assert [r.id for r in store.search("question")] == [c.id]
        assert [r.id for r in store.search("trea*")] == [b.id]
        assert [r.id for r in store.search('"stood in the marsh"')] == [a.id]
        assert store.search("heron taxes") == []  # words are ANDed


def test_search_ignores_accents_so_spanish_words_match_typed_without_them(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        r = store.save(_record(original="La canción del pájaro en la montaña."))
        assert [x.id for x in store.search("cancion pajaro")] == [r.id]


@pytest.mark.parametrize("query", ['AND', 'OR heron', '"unbalanced', 'heron(', 'NEAR(a b',
                                   'col:heron', '-heron', 'heron AND', "^heron", "he'ron"])
def test_search_with_fts_syntax_characters_never_crashes(db_path: Path, query: str) -> None:
    with HistoryStore(db_path) as store:
        store.save(_record(original="The heron stood still."))
        results = store.search(query)
        assert isinstance(results, list)


@pytest.mark.parametrize("query", ["", "   ", "***", '""', "()"])
def test_search_without_words_says_what_to_type(db_path: Path, query: str) -> None:
    with HistoryStore(db_path) as store, pytest.raises(InvalidRequestError) as info:
        store.search(query)
    assert info.value.param == "query"
    assert "quoted phrase" in str(info.value)


def test_deleted_results_disappear_from_list_and_search(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        r = store.save(_record(original="The heron stood still."))
        assert store.delete(r.id[:8]) is True
        assert store.delete(r.id) is False
        assert store.get(r.id) is None
        assert store.search("heron") == []
        assert store.count() == 0


def test_list_is_newest_first_and_filters_by_task_and_model(db_path: Path) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with HistoryStore(db_path) as store:
        for i in range(5):
            when = t0 + timedelta(minutes=i)
            store.save(_record(i, task="summarize" if i % 2 else "rewrite",
                               model="a" if i < 3 else "b", created_at=when, updated_at=when))
        assert [r.original[21] for r in store.list()] == ["4", "3", "2", "1", "0"]
        assert [r.original[21] for r in store.list(limit=2, offset=1)] == ["3", "2"]
        assert {r.task for r in store.list(task="rewrite")} == {"rewrite"}
        assert store.count(task="rewrite") == 3
        assert [r.original[21] for r in store.list(model="b")] == ["4", "3"]


def test_results_can_be_found_by_a_unique_id_prefix(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        r = store.save(_record())
        assert store.get(r.id[:6]) == r
        assert store.get("zzzz") is None


def _full_record() -> SavedResult:
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    return SavedResult(
        task="translate", model="gemma3-270m-starter",
        original="Línea uno,\n\"comillas\", y coma.\n\n| tabla |", result="Line one — ✓",
        parameters={"temperature": 0.7, "max_tokens": 256, "top_p": 0.9, "to": "en",
                    "stop": ["\n\n"]},
        source="/home/ana/notas.txt", language="es", prompt_tokens=123, completion_tokens=45,
        timings={"total_ms": 1234.5, "first_token_ms": 56.25},
        id="0123456789abcdef0123456789abcdef", created_at=created,
        updated_at=created + timedelta(seconds=3),
    )


def test_json_export_then_import_round_trips_every_field(tmp_path: Path) -> None:
    records = [_full_record(), _record(7, source=None, language=None)]
    with HistoryStore(tmp_path / "a.sqlite3") as first:
        for r in records:
            first.save(r)
        exported = first.export("json")
    with HistoryStore(tmp_path / "b.sqlite3") as second:
        assert second.import_json(exported) == 2
        for r in records:
            assert second.get(r.id) == r
        # Importing the same file again adds nothing: ids are kept and recognized.
        assert second.import_json(exported) == 0
        assert second.count() == 2
        assert second.export("json") == exported


def test_import_of_a_file_with_one_bad_record_imports_nothing(db_path: Path) -> None:
    good = _record(1).to_dict()
    bad = _record(2).to_dict()
    del bad["result"]
    with HistoryStore(db_path) as store:
        with pytest.raises(InvalidRequestError, match="result"):
            store.import_json(json.dumps([good, bad]))
        assert store.count() == 0
        with pytest.raises(InvalidRequestError, match="not valid JSON"):
            store.import_json("{not json")


def test_markdown_export_shows_task_model_result_and_quoted_original(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        r = store.save(_full_record())
        md = store.export("md")
    assert md.startswith("# LocalLoom saved results")
    assert "## Translate" in md
    assert f"`{r.id}`" in md
    assert "**Model:** gemma3-270m-starter" in md
    assert "**Source:** /home/ana/notas.txt" in md
    assert "### Result\n\nLine one — ✓" in md
    assert "> Línea uno,\n> \"comillas\", y coma.\n>\n> | tabla |" in md


def test_csv_export_has_one_row_per_result_with_all_columns(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        full = store.save(_full_record())
        store.save(_record(2))
        text = store.export("csv", ids=[full.id])
        rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == full.id
    assert row["original"] == full.original  # newlines and quotes survive CSV quoting
    assert json.loads(row["parameters"]) == full.parameters
    assert json.loads(row["timings"]) == full.timings
    assert row["created_at"] == "2024-05-06T07:08:09.123456+00:00"
    assert int(row["prompt_tokens"]) == 123


def test_an_offset_past_64_bits_lists_nothing_instead_of_crashing(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        store.save(_record(1))
        assert store.list(offset=2**70) == []
        assert store.search("volcanoes", offset=2**70) == []


def test_csv_export_neutralises_spreadsheet_formulas(db_path: Path) -> None:
    """Text from a web page must not run as a formula when the CSV opens in a spreadsheet."""
    with HistoryStore(db_path) as store:
        saved = store.save(_record(original='=HYPERLINK("http://evil.example","x")',
                                   result="+1+1"))
        rows = list(csv.DictReader(io.StringIO(store.export("csv", ids=[saved.id]))))
    assert rows[0]["original"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[0]["result"] == "'+1+1"


def test_export_of_unknown_ids_or_formats_is_a_clear_error(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        with pytest.raises(InvalidRequestError, match="history list"):
            store.export("json", ids=["deadbeefdeadbeef"])
        with pytest.raises(InvalidRequestError, match="json, markdown"):
            store.export("xml")


def test_eight_threads_saving_at_once_all_land(db_path: Path) -> None:
    store = HistoryStore(db_path)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for k in range(5):
                store.save(_record(n * 10 + k))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 40
    store.close()
    with HistoryStore(db_path) as reopened:
        assert reopened.count() == 40


_SAVER = """
import sys, time
from localloom.history import HistoryStore, SavedResult
path, n, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
with HistoryStore(path) as store:
    for k in range(5):
        store.save(SavedResult(task="summarize", model="m", original=f"proc {n} item {k}",
                               result="r"))
"""


def test_eight_processes_saving_at_once_to_a_new_database_all_land(db_path: Path) -> None:
    import time

    start = time.time() + 1.5  # every process is up and importing before anyone starts
    procs = [subprocess.Popen([sys.executable, "-c", _SAVER, str(db_path), str(n), str(start)],
                              stderr=subprocess.PIPE, text=True) for n in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with HistoryStore(db_path) as store:
        assert store.count() == 40
        assert [m[0] for m in store.migrations()] == [m.number for m in MIGRATIONS]


def test_locked_database_reports_an_error_and_loses_no_saved_rows(db_path: Path) -> None:
    store = HistoryStore(db_path, busy_timeout=0.2)
    kept = [store.save(_record(i)) for i in range(3)]
    other = sqlite3.connect(str(db_path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseLockedError) as info:
            store.save(_record(99))
        message = str(info.value)
        assert str(db_path) in message and "try again" in message
        assert "saved earlier are safe" in message
        assert store.count() == 3  # readers still work while another program writes
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.save(_record(100))  # the same store works once the lock is gone
    assert [r.id for r in kept] == [r.id for r in store.list()[1:][::-1]]
    store.close()
    with HistoryStore(db_path) as reopened:
        assert reopened.count() == 4


def test_corrupt_database_file_is_reported_with_its_path_and_left_untouched(
        tmp_path: Path) -> None:
    path = tmp_path / "mine" / "history.sqlite3"
    path.parent.mkdir()
    garbage = b"This is my diary, not a database.\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(DatabaseCorruptError) as info:
        HistoryStore(path)
    message = str(info.value)
    assert str(path) in message
    assert "Move it aside" in message and ".broken" in message
    assert path.read_bytes() == garbage
    assert [p.name for p in path.parent.iterdir()] == ["history.sqlite3"]  # no -wal, no -shm


def test_migrations_are_recorded_once_and_reopening_applies_none(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        first = store.migrations()
    assert [(n, name) for n, name, _ in first] == [(m.number, m.name) for m in MIGRATIONS]
    with HistoryStore(db_path) as store:
        assert store.migrations() == first


def test_a_database_from_an_older_version_is_upgraded_and_keeps_its_rows(db_path: Path) -> None:
    # Build the version-1 schema by hand, as an older LocalLoom would have left it.
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    conn.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at TEXT NOT NULL)")
    conn.executescript(MIGRATIONS[0].sql)
    conn.execute("INSERT INTO _migrations VALUES (1, 'create_results', '2024-01-01T00:00:00')")
    old = _record(original="An old heron record.")
    conn.execute(
        "INSERT INTO results (id, task, model, original, result, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (old.id, old.task, old.model, old.original, old.result, old.created_at.isoformat(),
         old.updated_at.isoformat()),
    )
    conn.close()
    with HistoryStore(db_path) as store:
        assert [m[0] for m in store.migrations()] == [m.number for m in MIGRATIONS]
        assert [r.id for r in store.search("heron")] == [old.id]


def test_results_saved_before_pages_were_recorded_gain_empty_page_fields(
        db_path: Path) -> None:
    # A version-2 database (no source_url / source_title), as LocalLoom 0.1 left it.
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(str(db_path), isolation_level=None)
    conn.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at TEXT NOT NULL)")
    for m in MIGRATIONS[:2]:
        conn.executescript(m.sql)
        conn.execute("INSERT INTO _migrations VALUES (?, ?, '2024-01-01T00:00:00')",
                     (m.number, m.name))
    old = _record(original="An old kestrel record.")
    conn.execute(
        "INSERT INTO results (id, task, model, original, result, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (old.id, old.task, old.model, old.original, old.result, old.created_at.isoformat(),
         old.updated_at.isoformat()),
    )
    conn.close()
    with HistoryStore(db_path) as store:
        kept = store.get(old.id)
        assert kept is not None and kept.source_url is None and kept.source_title is None
        page = store.save(_record(2, original="From a page", source_url="https://a.example/x",
                                  source_title="A [page] *title*"))
        again = store.get(page.id)
        assert again is not None
        assert (again.source_url, again.source_title) == ("https://a.example/x",
                                                          "A [page] *title*")
        md = store.export("markdown", [page.id])
        assert "[A \\[page\\] \\*title\\*](<https://a.example/x>)" in md
        csv_text = store.export("csv", [page.id])
        assert "source_url" in csv_text.splitlines()[0] and "https://a.example/x" in csv_text
        assert store.import_json(store.export("json"), replace=True) == 2
        assert store.get(page.id) == again


def test_a_search_total_is_the_number_of_matches_not_the_page(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        for n in range(5):
            store.save(_record(n, original=f"glaciers and lakes number {n}"))
        store.save(_record(9, original="nothing about ice"))
        page = store.search("glaciers", limit=2, offset=2)
        assert len(page) == 2
        assert store.search_count("glaciers") == 5
        assert store.search_count("zebra") == 0


def test_deleting_needs_the_full_id_or_a_unique_prefix_of_eight(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        saved = store.save(_record(1))
        assert not store.delete(saved.id[:4])  # enough to look it up, not to delete it
        assert store.get(saved.id[:4]) is not None
        assert store.delete(saved.id[:8])
        assert store.get(saved.id) is None


def test_a_full_disk_is_a_database_full_error_and_nothing_saved_is_lost(
        db_path: Path) -> None:
    from localloom.errors import DatabaseFullError
    from localloom.server.errors import reply_for

    with HistoryStore(db_path) as store:
        kept = store.save(_record(1))
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
        with pytest.raises(DatabaseFullError, match="Free some disk space") as info:
            store.save(_record(2, original="x" * 200_000))
        assert reply_for(info.value).status == 507
        assert reply_for(info.value).body["error"]["code"] == "insufficient_storage"
        assert store.get(kept.id) is not None


def test_data_folders_and_the_database_are_private_to_the_user(tmp_path: Path) -> None:
    import os
    import stat

    if os.name != "posix":
        pytest.skip("POSIX modes; Windows' per-user folders carry owner-only ACLs")
    settings = Settings(home=tmp_path / "home")
    with HistoryStore.for_settings(settings) as store:
        store.save(_record(1))
        wal = Path(str(store.path) + "-wal")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode)
                 for p in (settings.data_dir, store.path, wal) if p.exists()}
    assert modes[settings.data_dir.name] == 0o700
    assert modes[store.path.name] == 0o600
    assert modes.get(wal.name, 0o600) == 0o600
