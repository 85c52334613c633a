"""Search saved results by meaning: float32 vectors in SQLite, exact cosine in numpy.

Each result's text (its result, then its original) is embedded once per embedding model
and kept as a plain float32 BLOB in ``result_embeddings`` (migration 4). A search embeds
the query with the same model and ranks every stored vector by cosine (vectors are
unit-length, so a dot product); "hybrid" fuses that ranking with the FTS5 one by
reciprocal-rank fusion (RRF, k = 60). Exact search over a few hundred thousand vectors is
milliseconds in numpy, so no vector index (sqlite-vec) is needed.

Example::

    index = SemanticIndex(store, embed=lambda texts: engine.embeddings.encode(
        texts, model="starter", truncate=True), model="gemma3-270m-starter")
    index.index_missing()                       # embeds results that have no vector yet
    for hit in index.search("a calm summary of the volcano report", mode="hybrid"):
        print(hit.score, hit.record.id)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from localloom.errors import InvalidRequestError
from localloom.history.record import SavedResult, utc_now
from localloom.history.store import _SELECT, HistoryStore, _filters, _from_row

if TYPE_CHECKING:
    from localloom.config import Settings
    from localloom.engine import Engine

__all__ = ["SEARCH_MODES", "EngineEmbedder", "SearchHit", "SearchMode", "SemanticIndex",
           "check_mode", "embedding_text", "model_key", "open_index"]

SearchMode = Literal["semantic", "fts", "hybrid"]
SEARCH_MODES: tuple[str, ...] = ("semantic", "fts", "hybrid")
EmbedFn = Callable[[list[str]], np.ndarray]
_RRF_K = 60  # the constant of Cormack et al.'s reciprocal-rank fusion
_ORIGINAL_CHARS = 4000  # of the original text, after the result; the model truncates anyway
_BATCH = 8
# The store's row columns plus the row's seq (last), which vectors are keyed by.
_WITH_SEQ = _SELECT.replace(" FROM results AS r", ", r.seq FROM results AS r")


def embedding_text(record: SavedResult) -> str:
    """What is embedded for a saved result: the result, then the start of its original."""
    original = record.original[:_ORIGINAL_CHARS]
    return f"{record.result}\n\n{original}" if original.strip() else record.result


def check_mode(mode: str) -> SearchMode:
    """``mode`` if it is one of :data:`SEARCH_MODES`, else a clear error."""
    if mode not in SEARCH_MODES:
        raise InvalidRequestError(f"Unknown search mode {mode!r}: use semantic, fts or hybrid.",
                                  param="mode")
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class SearchHit:
    """One found result and its score (cosine for semantic, RRF for hybrid, rank for fts)."""

    record: SavedResult
    score: float


class SemanticIndex:
    """The vectors of one embedding model over a :class:`HistoryStore`."""

    def __init__(self, store: HistoryStore, *, embed: EmbedFn, model: str) -> None:
        self.store = store
        self.embed = embed
        self.model = model

    # -- writing vectors -----------------------------------------------------------------

    def missing(self, limit: int = 10_000, *, after_seq: int = 0) -> list[tuple[int, str]]:
        """(seq, text to embed) of results without a vector of this model, oldest first."""
        rows = self.store._read(
            _WITH_SEQ + " WHERE r.seq > ? AND NOT EXISTS (SELECT 1 FROM result_embeddings e"
            " WHERE e.seq = r.seq AND e.model = ?) ORDER BY r.seq LIMIT ?",
            (after_seq, self.model, limit), "finding results to embed")
        return [(int(row[-1]), embedding_text(_from_row(row[:-1]))) for row in rows]

    def add(self, items: Sequence[tuple[int, str]]) -> int:
        """Embed ``items`` (seq, text) and store their vectors; returns how many."""
        if not items:
            return 0
        vectors = np.asarray(self.embed([text for _, text in items]), dtype=np.float32)
        return self.put([seq for seq, _ in items], vectors)

    def put(self, seqs: Sequence[int], vectors: np.ndarray) -> int:
        """Store already computed vectors (rows of ``vectors``) for results ``seqs``."""
        now = utc_now().isoformat()
        rows = [(seq, self.model, int(v.shape[0]), v.astype("<f4").tobytes(), now)
                for seq, v in zip(seqs, vectors, strict=True)]
        with self.store._write("saving embeddings") as conn:
            # A result deleted meanwhile must not leave an orphan vector.
            conn.executemany(
                "INSERT OR REPLACE INTO result_embeddings (seq, model, dim, vector, embedded_at)"
                " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM results WHERE seq = ?)",
                [(*row, row[0]) for row in rows])
        return len(rows)

    def index_missing(self, *, after_seq: int = 0,
                      progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every result that has no vector of this model yet; returns how many."""
        todo = self.missing(after_seq=after_seq)
        done = 0
        for start in range(0, len(todo), _BATCH):
            done += self.add(todo[start:start + _BATCH])
            if progress is not None:
                progress(done, len(todo))
        return done

    def reindex(self, *, everything: bool = False,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Embed results without a vector; ``everything`` recomputes all of this model's."""
        if everything:
            with self.store._write("clearing embeddings") as conn:
                conn.execute("DELETE FROM result_embeddings WHERE model = ?", (self.model,))
        return self.index_missing(progress=progress)

    # -- reading -------------------------------------------------------------------------

    def count(self) -> int:
        """How many results have a vector of this model."""
        rows = self.store._read("SELECT count(*) FROM result_embeddings WHERE model = ?",
                                (self.model,), "counting embeddings")
        return int(rows[0][0])

    def max_seq(self) -> int:
        """The newest result's seq (0 when empty): results after it count as new."""
        rows = self.store._read("SELECT coalesce(max(seq), 0) FROM results", (),
                                "reading the newest result")
        return int(rows[0][0])

    def semantic(self, query: str, limit: int = 50, *, task: str | None = None,
                 model: str | None = None) -> list[SearchHit]:
        """Results ranked by cosine similarity of their vector to the query's."""
        if not query.strip():
            raise InvalidRequestError("The search is empty; type what you are looking for.",
                                      param="query")
        where, params = _filters(task, model)
        where = (where + " AND" if where else " WHERE") + " e.model = ?"
        rows = self.store._read(
            "SELECT r.seq, e.vector FROM results AS r JOIN result_embeddings AS e"
            f" ON e.seq = r.seq{where}", (*params, self.model), "reading embeddings")
        if not rows:
            return []
        matrix = np.stack([np.frombuffer(blob, dtype="<f4") for _, blob in rows])
        q = np.asarray(self.embed([query]), dtype=np.float32)[0]
        if q.shape[0] != matrix.shape[1]:
            raise InvalidRequestError(
                f"The stored vectors have {matrix.shape[1]} dimensions, the model "
                f"'{self.model}' makes {q.shape[0]}. Run `localloom history reindex --all`.",
                param="query")
        scores = matrix @ q
        order = np.argsort(-scores, kind="stable")[:limit]
        seqs = [int(rows[i][0]) for i in order]
        records = self._records(seqs)
        return [SearchHit(records[s], float(scores[i])) for s, i in zip(seqs, order,
                                                                          strict=True)
                if s in records]

    def fts(self, query: str, limit: int = 50, *, task: str | None = None,
            model: str | None = None) -> list[SearchHit]:
        """The FTS5 ranking as hits (score: 1 / rank)."""
        found = self.store.search(query, limit, task=task, model=model)
        return [SearchHit(r, 1.0 / (i + 1)) for i, r in enumerate(found)]

    def hybrid(self, query: str, limit: int = 50, *, task: str | None = None,
               model: str | None = None) -> list[SearchHit]:
        """FTS5 and semantic rankings fused: score = sum of 1 / (60 + rank)."""
        depth = max(limit, 100)
        try:
            words = self.fts(query, depth, task=task, model=model)
        except InvalidRequestError:
            words = []  # a query of punctuation only: meaning alone
        meaning = self.semantic(query, depth, task=task, model=model)
        fused: dict[str, float] = {}
        by_id: dict[str, SavedResult] = {}
        for ranking in (words, meaning):
            for rank, hit in enumerate(ranking, start=1):
                fused[hit.record.id] = fused.get(hit.record.id, 0.0) + 1.0 / (_RRF_K + rank)
                by_id[hit.record.id] = hit.record
        best = sorted(fused, key=lambda k: -fused[k])[:limit]
        return [SearchHit(by_id[k], fused[k]) for k in best]

    def search(self, query: str, limit: int = 50, *, mode: str = "hybrid",
               task: str | None = None, model: str | None = None) -> list[SearchHit]:
        """Search in ``mode``: semantic, fts or hybrid."""
        run = {"semantic": self.semantic, "fts": self.fts, "hybrid": self.hybrid}
        return run[check_mode(mode)](query, limit, task=task, model=model)

    def _records(self, seqs: Sequence[int]) -> dict[int, SavedResult]:
        if not seqs:
            return {}
        marks = ", ".join("?" for _ in seqs)
        rows = self.store._read(f"{_WITH_SEQ} WHERE r.seq IN ({marks})", tuple(seqs),
                                "reading results")
        return {int(row[-1]): _from_row(row[:-1]) for row in rows}


def model_key(settings: Settings, model: str) -> str:
    """The id vectors are stored under: a catalog model's canonical id, or the path."""
    if model.lower().endswith(".gguf") or "/" in model or "\\" in model:
        return model
    from localloom.catalog import Catalog

    return Catalog(settings).get(model).id


class EngineEmbedder:
    """An :data:`EmbedFn` on a library :class:`~localloom.engine.Engine`, which it makes
    (and loads the model into) on first use only: a search that finds no vectors, or an
    FTS search, loads nothing."""

    def __init__(self, settings: Settings, model: str | None = None,
                 engine: Engine | None = None) -> None:
        self.settings = settings
        self.model = model_key(settings, model or settings.embedding_model)
        self._engine = engine
        self._owned = engine is None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._engine is None:
            from localloom.engine import Engine

            self._engine = Engine(self.settings)
        if self.model not in self._engine.loaded_models:
            self._engine.load(self.model)
        return self._engine.embeddings.encode(texts, model=self.model, truncate=True)

    def close(self) -> None:
        """Close the engine if this object made it."""
        if self._owned and self._engine is not None:
            self._engine.close()
            self._engine = None


def open_index(store: HistoryStore, embedder: EngineEmbedder) -> SemanticIndex:
    """The index of ``embedder``'s model over ``store``."""
    return SemanticIndex(store, embed=embedder, model=embedder.model)
