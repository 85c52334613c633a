"""`HistoryStore`: saved results in one SQLite file, searchable with FTS5.

The store owns its schema (numbered migrations, applied on open), writes in transactions,
runs in WAL mode with a busy timeout, and is safe to share between threads (one
connection behind a lock) and between processes (SQLite's own locking). It never deletes,
replaces or rewrites a file it cannot read: a damaged file is reported and left alone.

Example::

    from localloom.history import HistoryStore, SavedResult
    with HistoryStore.for_settings(settings) as store:
        saved = store.save(SavedResult(task="summarize", model="starter",
                                       original=text, result=summary))
        store.search("volcano")      # FTS5 over original, result and task
        store.export("markdown")
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from localloom.config import Settings, make_private_dir, make_private_file
from localloom.errors import (
    DatabaseCorruptError,
    DatabaseFullError,
    DatabaseLockedError,
    HistoryError,
    InvalidRequestError,
)
from localloom.history.formats import export_records, parse_json
from localloom.history.migrations import applied_migrations, apply_migrations
from localloom.history.record import SavedResult

__all__ = ["HistoryStore", "fts_query"]

DB_FILENAME = "history.sqlite3"
_COLUMNS = ("id", "task", "model", "original", "result", "parameters", "source", "language",
            "created_at", "updated_at", "prompt_tokens", "completion_tokens", "timings",
            "source_url", "source_title")
_SELECT = "SELECT " + ", ".join("r." + c for c in _COLUMNS) + " FROM results AS r"
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_MIN_PREFIX = 4
_MIN_DELETE_PREFIX = 8  # deleting by a short prefix is too easy to get wrong
_FULL = 13  # SQLITE_FULL


def fts_query(text: str) -> str:
    """Turn what a user typed into a safe FTS5 query.

    Every word becomes a quoted term, so FTS5 operators and punctuation cannot cause
    syntax errors; words are ANDed, ``"quoted phrases"`` stay phrases, and a trailing
    ``*`` keeps prefix search (``volc*``).
    """
    terms: list[str] = []
    for phrase, word in re.findall(r'"([^"]*)"|([^\s"]+)', text):
        raw = phrase if phrase else word
        prefix = not phrase and raw.endswith("*")
        core = raw.rstrip("*") if prefix else raw
        if not any(ch.isalnum() for ch in core):
            continue
        terms.append('"' + core.replace('"', '""') + '"' + ("*" if prefix else ""))
    if not terms:
        raise InvalidRequestError(
            f"The search {text!r} has no words to look for. Type one or more words, "
            'a "quoted phrase", or a prefix such as volc*.',
            param="query",
        )
    return " AND ".join(terms)


class HistoryStore:
    """Saved task results in a SQLite database at `path` (created if missing)."""

    def __init__(self, path: Path | str, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn = self._open()

    @classmethod
    def for_settings(cls, settings: Settings, *, busy_timeout: float = 5.0) -> HistoryStore:
        """The user's store: ``Settings.data_dir / "history.sqlite3"``."""
        return cls(settings.data_dir / DB_FILENAME, busy_timeout=busy_timeout)

    # -- lifecycle ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self.path.is_dir():
            raise HistoryError(
                f"The history database path {self.path} is a directory. Move it away or point "
                "LOCALLOOM_HOME elsewhere."
            )
        try:
            make_private_dir(self.path.parent)
            make_private_file(self.path)
        except OSError as exc:
            raise HistoryError(
                f"Cannot create the folder for the history database {self.path}: {exc}. Check "
                "its permissions or set LOCALLOOM_HOME to a writable folder."
            ) from exc
        conn: sqlite3.Connection | None = None
        with self._errors("opening the database"):
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                # Reading the header first makes a non-database fail here, before any write.
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                conn.execute("PRAGMA journal_mode = WAL").fetchone()
                # FULL: a result reported as saved survives a power cut, not just a crash.
                conn.execute("PRAGMA synchronous = FULL")
                apply_migrations(conn)
            except BaseException:
                conn.close()
                raise
        assert conn is not None
        return conn

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- error translation --------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn sqlite3 errors into the history errors, with what to do next."""
        try:
            yield
        except sqlite3.Error as exc:
            code = _error_code(exc)
            if code in _BUSY:
                raise DatabaseLockedError(
                    f"The history database {self.path} stayed locked by another program for "
                    f"{self.busy_timeout:g} s while {action}, so that step did not happen. "
                    "Results saved earlier are safe. Close other programs using this file "
                    "(another LocalLoom command or server, a database browser) and try again."
                ) from exc
            if code == _FULL:
                raise DatabaseFullError(
                    f"The disk holding the history database {self.path} is full, so "
                    f"{action} did not happen. Results saved earlier are safe. Free some disk "
                    "space (or move LocalLoom's data with LOCALLOOM_HOME) and try again."
                ) from exc
            if code in _CORRUPT:
                raise DatabaseCorruptError(
                    f"The history database {self.path} is damaged or is not a SQLite database "
                    f"({exc}). LocalLoom has not changed it. Move it aside, for example "
                    f"`mv '{self.path}' '{self.path}.broken'`, and LocalLoom will start a new "
                    "one; the old file may still be recoverable with `sqlite3 ... .recover`."
                ) from exc
            raise HistoryError(
                f"The history database {self.path} failed while {action}: {exc}."
            ) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is saved, or none of it."""
        with self._lock, self._errors(action):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Sequence[Any], action: str) -> builtins.list[Any]:
        with self._lock, self._errors(action):
            return self._conn.execute(sql, tuple(params)).fetchall()

    # -- records ----------------------------------------------------------------------

    def save(self, record: SavedResult) -> SavedResult:
        """Store a new record (its id must be new) and return it."""
        with self._write("saving a result") as conn:
            self._insert(conn, record, replace=False)
        return record

    def _insert(self, conn: sqlite3.Connection, record: SavedResult, *, replace: bool) -> bool:
        row = _to_row(record)
        exists = conn.execute("SELECT 1 FROM results WHERE id = ?", (record.id,)).fetchone()
        if exists and not replace:
            return False
        if exists:
            sets = ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
            conn.execute(f"UPDATE results SET {sets} WHERE id = ?", (*row[1:], record.id))
        else:
            marks = ", ".join("?" for _ in _COLUMNS)
            conn.execute(f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({marks})", row)
        return True

    def resolve_id(self, id_or_prefix: str, *, min_prefix: int = _MIN_PREFIX) -> str | None:
        """The full id for an id or a unique prefix (at least ``min_prefix`` characters),
        else None."""
        key = id_or_prefix.strip().lower()
        if not key:
            return None
        rows = self._read("SELECT id FROM results WHERE id = ?", (key,), "looking up a result")
        if rows:
            return str(rows[0][0])
        if len(key) < min_prefix or not re.fullmatch(r"[0-9a-z_-]+", key):
            return None
        rows = self._read("SELECT id FROM results WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                          (key.replace("_", "\\_") + "%",), "looking up a result")
        if len(rows) > 1:
            raise InvalidRequestError(
                f"More than one saved result starts with '{id_or_prefix}'. Give more characters "
                "of the id (`localloom history list` shows them).",
                param="id",
            )
        return str(rows[0][0]) if rows else None

    def get(self, id_or_prefix: str) -> SavedResult | None:
        """The record with this id (or unique id prefix), or None."""
        full = self.resolve_id(id_or_prefix)
        if full is None:
            return None
        rows = self._read(_SELECT + " WHERE r.id = ?", (full,), "reading a result")
        return _from_row(rows[0]) if rows else None

    def list(self, limit: int = 50, offset: int = 0, *, task: str | None = None,
             model: str | None = None) -> builtins.list[SavedResult]:
        """Records, newest first, optionally only of one task and/or model."""
        where, params = _filters(task, model)
        rows = self._read(
            f"{_SELECT}{where} ORDER BY r.created_at DESC, r.seq DESC LIMIT ? OFFSET ?",
            (*params, _check_limit(limit), min(max(0, offset), _MAX_SQL_INT)), "listing results",
        )
        return [_from_row(r) for r in rows]

    def search_count(self, query: str, *, task: str | None = None,
                     model: str | None = None) -> int:
        """How many records match ``query`` (for a page's total)."""
        match = fts_query(query)
        where, params = _filters(task, model)
        where = (where + " AND" if where else " WHERE") + " results_fts MATCH ?"
        sql = (f"SELECT COUNT(*) FROM results r JOIN results_fts ON results_fts.rowid = r.seq"
               f"{where}")
        with self._lock, self._errors("counting matches"):
            try:
                return int(self._conn.execute(sql, (*params, match)).fetchone()[0])
            except sqlite3.OperationalError as exc:
                if _error_code(exc) in _BUSY | _CORRUPT:
                    raise
                raise InvalidRequestError(
                    f"The search {query!r} could not be run ({exc}). Use plain words, "
                    '"quoted phrases" or a prefix such as volc*.', param="query") from exc

    def search(self, query: str, limit: int = 50, offset: int = 0, *,
               task: str | None = None, model: str | None = None) -> builtins.list[SavedResult]:
        """Records matching `query` in their original text, result or task, best first."""
        match = fts_query(query)
        where, params = _filters(task, model)
        where = (where + " AND" if where else " WHERE") + " results_fts MATCH ?"
        sql = (f"{_SELECT} JOIN results_fts ON results_fts.rowid = r.seq{where} "
               "ORDER BY results_fts.rank, r.seq DESC LIMIT ? OFFSET ?")
        args = (*params, match, _check_limit(limit), min(max(0, offset), _MAX_SQL_INT))
        with self._lock, self._errors("searching"):
            try:
                rows = self._conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if _error_code(exc) in _BUSY | _CORRUPT:
                    raise  # the store's own errors, from _errors
                raise InvalidRequestError(
                    f"The search {query!r} could not be run ({exc}). Use plain words, "
                    '"quoted phrases" or a prefix such as volc*.',
                    param="query",
                ) from exc
        return [_from_row(r) for r in rows]

    def count(self, *, task: str | None = None, model: str | None = None) -> int:
        """How many records are saved (optionally of one task and/or model)."""
        where, params = _filters(task, model)
        rows = self._read(f"SELECT count(*) FROM results AS r{where}", params, "counting")
        return int(rows[0][0])

    def delete(self, id_or_prefix: str) -> bool:
        """Delete one record (by its id or a unique prefix of 8 characters or more); True if
        it existed."""
        full = self.resolve_id(id_or_prefix, min_prefix=_MIN_DELETE_PREFIX)
        if full is None:
            return False
        with self._write("deleting a result") as conn:
            cur = conn.execute("DELETE FROM results WHERE id = ?", (full,))
            return cur.rowcount > 0

    # -- export / import ----------------------------------------------------------------

    def export(self, format: str = "json", ids: Sequence[str] | None = None) -> str:
        """Records (the given ids, or all, newest first) as json, markdown (md) or csv."""
        records: builtins.list[SavedResult] = []
        if ids is None:
            rows = self._read(f"{_SELECT} ORDER BY r.created_at DESC, r.seq DESC", (),
                              "exporting")
            records = [_from_row(r) for r in rows]
        else:
            missing: builtins.list[str] = []
            for key in ids:
                found = self.get(key)
                if found is None:
                    missing.append(key)
                else:
                    records.append(found)
            if missing:
                raise InvalidRequestError(
                    "No saved result has the id " + ", ".join(repr(m) for m in missing)
                    + ". `localloom history list` shows the ids.",
                    param="ids",
                )
        return export_records(records, format)

    def import_json(self, text: str, *, replace: bool = False) -> int:
        """Add the records of a JSON export, keeping their ids and timestamps.

        Records whose id is already saved are skipped (or overwritten with
        `replace=True`). All-or-nothing: a bad record imports none. Returns how many
        records were written.
        """
        records = parse_json(text)
        with self._write("importing results") as conn:
            return sum(self._insert(conn, r, replace=replace) for r in records)

    def migrations(self) -> builtins.list[tuple[int, str, str]]:
        """(number, name, applied_at) of each schema migration applied to this file."""
        with self._lock, self._errors("reading the schema version"):
            return applied_migrations(self._conn)


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF
    # Python 3.10 has no error codes on exceptions; its messages are SQLite's fixed texts.
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return 5
    if "not a database" in text or "malformed" in text:
        return 26
    return None


_MAX_SQL_INT = 2**63 - 1  # SQLite integers are 64-bit


def _check_limit(limit: int) -> int:
    if limit < 1 or limit > 10_000:
        raise InvalidRequestError("limit must be between 1 and 10000.", param="limit")
    return limit


def _filters(task: str | None, model: str | None) -> tuple[str, builtins.list[str]]:
    clauses, params = [], []
    if task:
        clauses.append("r.task = ?")
        params.append(task)
    if model:
        clauses.append("r.model = ?")
        params.append(model)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _to_row(r: SavedResult) -> tuple[Any, ...]:
    return (r.id, r.task, r.model, r.original, r.result,
            json.dumps(r.parameters, ensure_ascii=False, sort_keys=True), r.source, r.language,
            r.created_at.isoformat(), r.updated_at.isoformat(), int(r.prompt_tokens),
            int(r.completion_tokens), json.dumps(r.timings, sort_keys=True), r.source_url,
            r.source_title)


def _from_row(row: Sequence[Any]) -> SavedResult:
    data = dict(zip(_COLUMNS, row, strict=True))
    return SavedResult(
        id=data["id"], task=data["task"], model=data["model"], original=data["original"],
        result=data["result"], parameters=json.loads(data["parameters"]),
        source=data["source"], language=data["language"],
        created_at=datetime.fromisoformat(data["created_at"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
        prompt_tokens=int(data["prompt_tokens"]), completion_tokens=int(data["completion_tokens"]),
        timings=json.loads(data["timings"]), source_url=data["source_url"],
        source_title=data["source_title"],
    )
