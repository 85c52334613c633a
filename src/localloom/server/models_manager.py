"""Models on demand: load on first use, unload after ``keep_alive``, cap how many stay loaded.

The engine is the one registry of what is loaded (an injected engine may arrive with models
loaded: they simply are). This manager adds the server's policy on top, per model: leases,
the latest ``keep_alive`` and the last use.

A request leases its model for as long as it runs (a stream: until its last event). Leased
models are never unloaded by the idle timer or evicted; when a new model needs room, the
least recently used idle one goes.

A request may set its own ``keep_alive`` (Ollama's rule: the most recent request to lease a
model decides; None means the server's LOCALLOOM_KEEP_ALIVE). 0 unloads the model as soon as
no request holds it; a negative value keeps it loaded until it is unloaded or evicted.

Example::

    manager = ModelsManager(engine, catalog, settings)
    lease = await manager.acquire("tiny")      # loads "tiny" if needed
    try:
        await engine.chat.completions.create(model=lease.model_id, messages=...)
    finally:
        lease.release()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localloom.catalog.builtin import STARTER_ID
from localloom.config import Settings
from localloom.errors import InvalidRequestError, LocalLoomError, ServerBusyError

if TYPE_CHECKING:
    from localloom.catalog.catalog import Catalog
    from localloom.engine import AsyncEngine, InitProgressReport

__all__ = ["Lease", "LoadedModel", "ModelsManager"]

logger = logging.getLogger("localloom.server")


@dataclass
class _Use:
    """The server's policy state of one loaded model (the engine holds the model)."""

    model_id: str
    last_used: float  # monotonic, for the idle timer and eviction
    leases: int = 0
    keep_alive: float | None = None  # the latest request's; None: the server's setting


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model as ``GET /api/ps`` shows it."""

    id: str
    loaded_at: float
    loaded_for_s: float
    idle_for_s: float
    active_requests: int
    expires_in_s: float | None  # None: in use, or keep_alive < 0 (never)


class Lease:
    """A running request's hold on a model; :meth:`release` is idempotent."""

    def __init__(self, manager: ModelsManager, use: _Use) -> None:
        self._manager = manager
        self._use = use
        self._released = False
        use.leases += 1

    @property
    def model_id(self) -> str:
        """The canonical id (an alias in the request resolves to it)."""
        return self._use.model_id

    def release(self) -> None:
        """Give the model back; the keep-alive timer starts from now (keep_alive 0: the
        model is unloaded now if no other request holds it)."""
        if not self._released:
            self._released = True
            self._use.leases -= 1
            self._use.last_used = self._manager.clock()
            if self._use.leases == 0 and self._manager.keep_alive_of(self._use) == 0:
                self._manager.unload_soon(self._use)


class ModelsManager:
    """Loads and unloads models of one :class:`AsyncEngine` for the server, by policy."""

    def __init__(self, engine: AsyncEngine, catalog: Catalog, settings: Settings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.catalog = catalog
        self.keep_alive = settings.keep_alive
        self.max_loaded = settings.max_loaded_models
        self.clock = clock
        self._uses: dict[str, _Use] = {}
        self._leaving: set[str] = set()  # being unloaded: no new lease lands on them
        self._remote: dict[str, _Use] = {}  # upstreams' models: leased, never loaded here
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._unloading: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs

    # -- lookups --------------------------------------------------------------------------

    def resolve(self, model_id: str) -> str:
        """Canonical id for an id or alias; raises ModelNotFoundError with suggestions."""
        if self.engine.is_remote(model_id):
            return model_id
        return self.catalog.get(model_id).id

    def is_loaded(self, model_id: str) -> bool:
        """Whether this (canonical) id is loaded (and not being unloaded)."""
        return model_id in self.engine.loaded_models and model_id not in self._leaving

    @property
    def loaded(self) -> list[str]:
        """Loaded model ids, most recently used last."""
        ids = [m for m in self.engine.loaded_models if m not in self._leaving]
        return sorted(ids, key=lambda m: self._use(m).last_used)

    def required_model(self, requested: str | None) -> str:
        """The model an API request runs on: the one it names, else the only loaded one."""
        if requested:
            return requested
        loaded = self.loaded
        if len(loaded) == 1:
            return loaded[0]
        raise InvalidRequestError(
            "'model' is required: name a model id (`GET /v1/models` lists them).", param="model")

    def default_model(self, requested: str | None) -> str:
        """The model a task runs on: the one it names, else the most recently used loaded
        one, else the starter."""
        loaded = self.loaded
        return requested or (loaded[-1] if loaded else STARTER_ID)

    def keep_alive_of(self, use: _Use) -> float:
        """Seconds ``use``'s model stays loaded once idle (negative: never unloaded by the
        timer)."""
        return self.keep_alive if use.keep_alive is None else use.keep_alive

    def _use(self, model_id: str) -> _Use:
        use = self._uses.get(model_id)
        if use is None:  # loaded by a caller other than this manager: idle from now
            use = self._uses[model_id] = _Use(model_id, last_used=self.clock())
        return use

    def ps(self) -> list[LoadedModel]:
        """What is loaded, for how long, and when it will be unloaded."""
        now, wall = self.clock(), time.time()
        out = []
        for model_id in self.loaded:
            use = self._use(model_id)
            try:
                loaded_at = self.engine.engine.model_info(model_id).loaded_at
            except LocalLoomError:  # unloaded meanwhile
                continue
            idle = 0.0 if use.leases else now - use.last_used
            expires = None
            keep = self.keep_alive_of(use)
            if not use.leases and keep >= 0:
                expires = max(0.0, keep - idle)
            out.append(LoadedModel(id=model_id, loaded_at=loaded_at,
                                   loaded_for_s=wall - loaded_at, idle_for_s=idle,
                                   active_requests=use.leases, expires_in_s=expires))
        return sorted(out, key=lambda m: m.loaded_at)

    # -- using models ---------------------------------------------------------------------

    async def acquire(self, model_id: str,
                      progress: Callable[[InitProgressReport], None] | None = None, *,
                      keep_alive: float | None = None) -> Lease:
        """Lease the model, loading it first if needed (the caller must release it).

        ``keep_alive`` (seconds; 0: unload once idle; negative: never; None: the server's
        setting) holds from this request on, until another request leases the model.
        """
        if self.engine.is_remote(model_id):  # an upstream's: no loading, no cap, no timer
            remote = self._remote.setdefault(model_id, _Use(model_id, self.clock()))
            return Lease(self, remote)
        canonical = self.resolve(model_id)
        if not self.is_loaded(canonical):
            await self.load(canonical, progress)
        if not self.is_loaded(canonical):  # unloaded again since: rare, ask for a retry
            raise ServerBusyError(f"Model '{canonical}' was unloaded while loading; retry.", 1.0)
        use = self._use(canonical)
        use.keep_alive = keep_alive
        return Lease(self, use)

    @contextlib.asynccontextmanager
    async def use(self, model_id: str) -> AsyncIterator[str]:
        """``async with manager.use(id) as canonical_id:`` for non-streaming work."""
        lease = await self.acquire(model_id)
        try:
            yield lease.model_id
        finally:
            lease.release()

    async def load(self, model_id: str,
                   progress: Callable[[InitProgressReport], None] | None = None) -> str:
        """Load a model (download it first if needed), evicting the LRU idle model if full."""
        if self.engine.is_remote(model_id):
            return model_id
        canonical = self.resolve(model_id)
        async with self._lock:
            if self.is_loaded(canonical):
                return canonical
            while len(self.loaded) >= self.max_loaded:
                await self._evict_one(canonical)
            await self.engine.load(canonical, progress_callback=progress)
            self._uses[canonical] = _Use(canonical, last_used=self.clock())
            logger.info("Loaded model %s", canonical)
        return canonical

    async def _evict_one(self, for_model: str) -> None:
        idle = [self._use(m) for m in self.loaded if self._use(m).leases == 0]
        if not idle:
            raise ServerBusyError(
                f"Cannot load '{for_model}': all {self.max_loaded} loaded models are serving "
                "requests. Retry shortly, or raise LOCALLOOM_MAX_LOADED_MODELS.", retry_after=5.0)
        victim = min(idle, key=lambda u: u.last_used)
        await self._unload(victim.model_id)
        logger.info("Unloaded model %s to make room for %s", victim.model_id, for_model)

    async def unload(self, model_id: str) -> bool:
        """Unload a model now (running requests on it end with an error). False if not loaded."""
        canonical = self.resolve(model_id)
        async with self._lock:
            if not self.is_loaded(canonical):
                return False
            await self._unload(canonical)
        return True

    def unload_soon(self, use: _Use) -> None:
        """Unload ``use``'s model in a task on the running loop if it is still idle then."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a library caller): the timer's next tick does it
            return
        task = loop.create_task(self._unload_if_idle(use))
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)

    async def _unload_if_idle(self, use: _Use) -> None:
        async with self._lock:
            if (self._uses.get(use.model_id) is use and use.leases == 0
                    and self.is_loaded(use.model_id)):
                try:
                    await self._unload(use.model_id)
                except Exception:  # the timer retries; the request has its answer already
                    logger.exception("Unloading %s (keep_alive 0) failed", use.model_id)
                    return
                logger.info("Unloaded model %s (keep_alive 0)", use.model_id)

    async def _unload(self, model_id: str) -> None:
        # Marked leaving first, so no new lease lands on a model being unloaded.
        self._leaving.add(model_id)
        try:
            await self.engine.unload(model_id)
        finally:
            self._leaving.discard(model_id)
            self._uses.pop(model_id, None)

    # -- the idle timer ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the keep-alive timer (on the server's event loop). It runs even when the
        server's keep_alive is negative: a request may set a finite one."""
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        """Stop the keep-alive timer (and wait for keep_alive-0 unloads under way)."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        await asyncio.gather(*self._unloading, return_exceptions=True)

    def _expired(self, model_id: str) -> bool:
        use = self._use(model_id)
        keep = self.keep_alive_of(use)
        return use.leases == 0 and keep >= 0 and self.clock() - use.last_used >= keep

    async def reap(self) -> list[str]:
        """Unload every model idle for longer than its ``keep_alive``; returns their ids."""
        done = []
        for model_id in [m for m in self.loaded if self._expired(m)]:
            async with self._lock:
                if self.is_loaded(model_id) and self._expired(model_id):
                    keep = self.keep_alive_of(self._use(model_id))
                    await self._unload(model_id)
                    done.append(model_id)
                    logger.info("Unloaded idle model %s (keep_alive %.0fs)", model_id, keep)
        return done

    async def _reap_forever(self) -> None:
        interval = min(1.0, max(0.05, self.keep_alive / 4)) if self.keep_alive >= 0 else 1.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except Exception:  # keep the timer alive; the next tick retries
                logger.exception("Unloading an idle model failed")
