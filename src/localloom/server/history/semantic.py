"""The server's side of search by meaning: the background indexer and query embedding.

Results saved while the server runs (``POST /api/history``, tasks run with ``save``) are
embedded in the background with LOCALLOOM_EMBEDDING_MODEL, leased through the models
manager like any request. The indexer works only once the user asked for search by
meaning: the setting is given explicitly, or some results already have vectors (from
`localloom history reindex`); otherwise no model is loaded behind the user's back.
Results saved before the server started are left to `localloom history reindex`.

Example::

    indexer = HistoryIndexer(settings=settings, engine=engine, models=models,
                             store=lambda: service.store)
    indexer.start(); indexer.poke(); await indexer.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from localloom.errors import LocalLoomError
from localloom.history import HistoryStore
from localloom.history.semantic import SemanticIndex, model_key

if TYPE_CHECKING:
    from localloom.config import Settings
    from localloom.engine import AsyncEngine
    from localloom.server.models_manager import ModelsManager

__all__ = ["HistoryIndexer"]

logger = logging.getLogger("localloom.server")
_POLL_S = 5.0  # tasks save through their own store: look for new rows this often
_BATCH = 8


class HistoryIndexer:
    """Embeds new saved results in the background; embeds queries for searches."""

    def __init__(self, *, settings: Settings, engine: AsyncEngine, models: ModelsManager,
                 store: Callable[[], HistoryStore]) -> None:
        self.settings = settings
        self.engine = engine
        self.models = models
        self._store = store
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._start_seq: int | None = None
        self._explicit = "embedding_model" in settings.model_fields_set

    @property
    def model(self) -> str:
        """The embedding model's canonical id (the key its vectors are stored under)."""
        try:
            return self.models.resolve(self.settings.embedding_model)
        except LocalLoomError:
            return model_key(self.settings, self.settings.embedding_model)

    def index(self, embed: Callable[[list[str]], np.ndarray] | None = None) -> SemanticIndex:
        """The index of the embedding model (``embed`` for the query, when searching)."""
        def refuse(texts: list[str]) -> np.ndarray:
            raise RuntimeError("embed asynchronously through HistoryIndexer.embed")

        return SemanticIndex(self._store(), embed=embed or refuse, model=self.model)

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts`` with the embedding model (loaded if needed)."""
        async with self.models.use(self.settings.embedding_model) as model_id:
            return await self.engine.embeddings.encode(texts, model=model_id, truncate=True)

    # -- background ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background loop (in the server's event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def poke(self) -> None:
        """A result was saved: look for work now."""
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the loop and wait for it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        try:
            self._start_seq = await asyncio.to_thread(lambda: self.index().max_seq())
        except LocalLoomError:
            logger.warning("Search by meaning is off: the history database did not open.")
            return
        failed = False
        while True:
            poked = False
            with contextlib.suppress(asyncio.TimeoutError):
                poked = await asyncio.wait_for(self._wake.wait(), _POLL_S)
            self._wake.clear()
            if failed and not poked:
                continue  # after a failure, only a new save tries again (no log spam)
            try:
                while await self.index_new():
                    pass
                failed = False
            except LocalLoomError as exc:  # e.g. the model cannot embed: say so once
                failed = True
                logger.warning("Embedding saved results failed: %s", exc)

    async def index_new(self) -> int:
        """Embed up to one batch of results saved since the server started; how many."""
        index = self.index()
        start = self._start_seq or 0

        def todo() -> list[tuple[int, str]]:
            if not self._explicit and index.count() == 0:
                return []  # search by meaning not asked for: load no model
            return index.missing(_BATCH, after_seq=start)

        items = await asyncio.to_thread(todo)
        if not items:
            return 0
        vectors = await self.embed([text for _, text in items])
        return await asyncio.to_thread(index.put, [seq for seq, _ in items], vectors)
