"""The history database's schema, as numbered forward-only migrations.

Each migration runs once, inside the same transaction that records it in ``_migrations``,
so a crash mid-migration leaves the database at the previous version (simonw/llm keeps its
schema this way). Never edit a released migration; append a new one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from localloom.history.record import utc_now

__all__ = ["MIGRATIONS", "Migration", "applied_migrations", "apply_migrations"]


@dataclass(frozen=True)
class Migration:
    """One schema step: its number, a name for humans, and the SQL it runs."""

    number: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create_results", """
        CREATE TABLE results (
            -- An INTEGER PRIMARY KEY keeps rowids stable across VACUUM, which the
            -- external-content FTS index relies on.
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            task TEXT NOT NULL,
            model TEXT NOT NULL,
            original TEXT NOT NULL,
            result TEXT NOT NULL,
            parameters TEXT NOT NULL DEFAULT '{}',
            source TEXT,
            language TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            timings TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX results_created ON results (created_at);
        CREATE INDEX results_task ON results (task);
        CREATE INDEX results_model ON results (model);
    """),
    Migration(2, "create_results_fts", """
        CREATE VIRTUAL TABLE results_fts USING fts5(
            original, result, task,
            content='results', content_rowid='seq',
            tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER results_ai AFTER INSERT ON results BEGIN
            INSERT INTO results_fts (rowid, original, result, task)
            VALUES (new.seq, new.original, new.result, new.task);
        END;
        CREATE TRIGGER results_ad AFTER DELETE ON results BEGIN
            INSERT INTO results_fts (results_fts, rowid, original, result, task)
            VALUES ('delete', old.seq, old.original, old.result, old.task);
        END;
        CREATE TRIGGER results_au AFTER UPDATE ON results BEGIN
            INSERT INTO results_fts (results_fts, rowid, original, result, task)
            VALUES ('delete', old.seq, old.original, old.result, old.task);
            INSERT INTO results_fts (rowid, original, result, task)
            VALUES (new.seq, new.original, new.result, new.task);
        END;
        INSERT INTO results_fts (results_fts) VALUES ('rebuild');
    """),
    # The browser extension saves results with the page they came from.
    Migration(3, "add_source_page", """
        ALTER TABLE results ADD COLUMN source_url TEXT;
        ALTER TABLE results ADD COLUMN source_title TEXT;
    """),
    # Search by meaning: one float32 vector per result and embedding model. A vector goes
    # when its result is deleted or its text changes (import --replace).
    Migration(4, "create_result_embeddings", """
        CREATE TABLE result_embeddings (
            seq INTEGER NOT NULL,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            embedded_at TEXT NOT NULL,
            PRIMARY KEY (seq, model)
        );
        CREATE TRIGGER result_embeddings_ad AFTER DELETE ON results BEGIN
            DELETE FROM result_embeddings WHERE seq = old.seq;
        END;
        CREATE TRIGGER result_embeddings_au AFTER UPDATE OF original, result ON results BEGIN
            DELETE FROM result_embeddings WHERE seq = old.seq;
        END;
    """),
)


def _statements(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    out: list[str] = []
    current = ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def applied_migrations(conn: sqlite3.Connection) -> list[tuple[int, str, str]]:
    """(number, name, applied_at) of every recorded migration, in order."""
    rows = conn.execute(
        "SELECT number, name, applied_at FROM _migrations ORDER BY number"
    ).fetchall()
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


def _up_to_date(conn: sqlite3.Connection) -> bool:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
    ).fetchone()
    if exists is None:
        return False
    done = {number for number, _, _ in applied_migrations(conn)}
    return all(m.number in done for m in MIGRATIONS)


def apply_migrations(conn: sqlite3.Connection) -> list[int]:
    """Bring the schema up to date; returns the numbers applied now (often none).

    The connection must be in autocommit mode (``isolation_level=None``). The check and
    the migrations run under one write lock, so processes opening a new database at
    once apply each migration exactly once.
    """
    if _up_to_date(conn):
        return []  # the common case reads only: no write lock, no waiting on writers
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations ("
            " number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {number for number, _, _ in applied_migrations(conn)}
        newly: list[int] = []
        for migration in MIGRATIONS:
            if migration.number in done:
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO _migrations (number, name, applied_at) VALUES (?, ?, ?)",
                (migration.number, migration.name, utc_now().isoformat()),
            )
            newly.append(migration.number)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return newly
