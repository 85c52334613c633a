"""Models on demand: load on first use, unload after ``keep_alive``, cap how many stay loaded.

A request leases its model for as long as it runs (a stream: until its last event). Leased
models are never unloaded by the idle timer or evicted; when a new model needs room, the
least recently used idle one goes.

A request may set its own ``keep_alive`` (Ollama's rule: the most recent request to lease a
model decides; None means the server's LOCALLOOM_KEEP_ALIVE). 0 unloads the model as soon as
no request holds it; a negative value keeps it loaded until it is unloaded or evicted.

Example::

    manager = ModelsManager(engine, catalog, settings)
    async with manager.use("tiny") as model_id:      # loads "tiny" if needed
        await engine.chat.completions.create(model=model_id, messages=...)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localloom.config import Settings
from localloom.errors import ServerBusyError

if TYPE_CHECKING:
    from localloom.catalog.catalog import Catalog
    from localloom.engine import AsyncEngine, InitProgressReport

__all__ = ["Lease", "LoadedModel", "ModelsManager"]

logger = logging.getLogger("localloom.server")


@dataclass
class _Slot:
    model_id: str
    loaded_at: float  # wall clock, for display
    last_used: float  # monotonic, for the idle timer
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

    def __init__(self, manager: ModelsManager, slot: _Slot) -> None:
        self._manager = manager
        self._slot = slot
        self._released = False
        slot.leases += 1

    @property
    def model_id(self) -> str:
        """The canonical id (an alias in the request resolves to it)."""
        return self._slot.model_id

    def release(self) -> None:
        """Give the model back; the keep-alive timer starts from now (keep_alive 0: the
        model is unloaded now if no other request holds it)."""
        if not self._released:
            self._released = True
            self._slot.leases -= 1
            self._slot.last_used = self._manager.clock()
            if self._slot.leases == 0 and self._manager.keep_alive_of(self._slot) == 0:
                self._manager.unload_soon(self._slot)


class ModelsManager:
    """Loads, tracks and unloads models of one :class:`AsyncEngine` for the server."""

    def __init__(self, engine: AsyncEngine, catalog: Catalog, settings: Settings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.catalog = catalog
        self.keep_alive = settings.keep_alive
        self.max_loaded = settings.max_loaded_models
        self.clock = clock
        self._slots: dict[str, _Slot] = {}
        self._lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._unloading: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs

    # -- lookups --------------------------------------------------------------------------

    def resolve(self, model_id: str) -> str:
        """Canonical id for an id or alias; raises ModelNotFoundError with suggestions."""
        return self.catalog.get(model_id).id

    def is_loaded(self, model_id: str) -> bool:
        """Whether this (canonical) id is loaded."""
        return model_id in self._slots

    @property
    def loaded(self) -> list[str]:
        """Loaded model ids, most recently used last."""
        return [s.model_id for s in sorted(self._slots.values(), key=lambda s: s.last_used)]

    def keep_alive_of(self, slot: _Slot) -> float:
        """Seconds ``slot`` stays loaded once idle (negative: never unloaded by the timer)."""
        return self.keep_alive if slot.keep_alive is None else slot.keep_alive

    def ps(self) -> list[LoadedModel]:
        """What is loaded, for how long, and when it will be unloaded."""
        now, wall = self.clock(), time.time()
        out = []
        for slot in sorted(self._slots.values(), key=lambda s: s.loaded_at):
            idle = 0.0 if slot.leases else now - slot.last_used
            expires = None
            keep = self.keep_alive_of(slot)
            if not slot.leases and keep >= 0:
                expires = max(0.0, keep - idle)
            out.append(LoadedModel(id=slot.model_id, loaded_at=slot.loaded_at,
                                   loaded_for_s=wall - slot.loaded_at, idle_for_s=idle,
                                   active_requests=slot.leases, expires_in_s=expires))
        return out

    # -- using models ---------------------------------------------------------------------

    async def acquire(self, model_id: str,
                      progress: Callable[[InitProgressReport], None] | None = None, *,
                      keep_alive: float | None = None) -> Lease:
        """Lease the model, loading it first if needed (the caller must release it).

        ``keep_alive`` (seconds; 0: unload once idle; negative: never; None: the server's
        setting) holds from this request on, until another request leases the model.
        """
        canonical = self.resolve(model_id)
        slot = self._slots.get(canonical)
        if slot is None:
            await self.load(canonical, progress)
            slot = self._slots.get(canonical)
        if slot is None:  # unloaded again between the load and here: rare, ask for a retry
            raise ServerBusyError(f"Model '{canonical}' was unloaded while loading; retry.", 1.0)
        slot.keep_alive = keep_alive
        return Lease(self, slot)

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
        canonical = self.resolve(model_id)
        async with self._lock:
            self._adopt_engine_models()
            if canonical in self._slots:
                return canonical
            while len(self._slots) >= self.max_loaded:
                await self._evict_one(canonical)
            await self.engine.load(canonical, progress_callback=progress)
            now = self.clock()
            self._slots[canonical] = _Slot(canonical, loaded_at=time.time(), last_used=now)
            logger.info("Loaded model %s", canonical)
        return canonical

    async def _evict_one(self, for_model: str) -> None:
        idle = [s for s in self._slots.values() if s.leases == 0]
        if not idle:
            raise ServerBusyError(
                f"Cannot load '{for_model}': all {self.max_loaded} loaded models are serving "
                "requests. Retry shortly, or raise LOCALLOOM_MAX_LOADED_MODELS.", retry_after=5.0)
        victim = min(idle, key=lambda s: s.last_used)
        await self._unload_slot(victim)
        logger.info("Unloaded model %s to make room for %s", victim.model_id, for_model)

    async def unload(self, model_id: str) -> bool:
        """Unload a model now (running requests on it end with an error). False if not loaded."""
        canonical = self.resolve(model_id)
        async with self._lock:
            slot = self._slots.get(canonical)
            if slot is None:
                return False
            await self._unload_slot(slot)
        return True

    async def unload_all(self) -> None:
        """Unload every model (server shutdown)."""
        async with self._lock:
            for slot in list(self._slots.values()):
                await self._unload_slot(slot)

    def unload_soon(self, slot: _Slot) -> None:
        """Unload ``slot`` in a task on the running loop if it is still idle by then."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a library caller): the timer's next tick does it
            return
        task = loop.create_task(self._unload_if_idle(slot))
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)

    async def _unload_if_idle(self, slot: _Slot) -> None:
        async with self._lock:
            if self._slots.get(slot.model_id) is slot and slot.leases == 0:
                try:
                    await self._unload_slot(slot)
                except Exception:  # the timer retries; the request has its answer already
                    logger.exception("Unloading %s (keep_alive 0) failed", slot.model_id)
                    return
                logger.info("Unloaded model %s (keep_alive 0)", slot.model_id)

    async def _unload_slot(self, slot: _Slot) -> None:
        # Out of the table first, so no new lease lands on a model being unloaded.
        self._slots.pop(slot.model_id, None)
        await self.engine.unload(slot.model_id)

    def _adopt_engine_models(self) -> None:
        # An injected engine may arrive with models loaded; count them against the cap.
        now = self.clock()
        for model_id in self.engine.loaded_models:
            if model_id not in self._slots:
                self._slots[model_id] = _Slot(model_id, loaded_at=time.time(), last_used=now)

    # -- the idle timer ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the keep-alive timer (on the server's event loop). It runs even when the
        server's keep_alive is negative: a request may set a finite one."""
        self._adopt_engine_models()
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def stop(self) -> None:
        """Stop the keep-alive timer (and wait for keep_alive-0 unloads under way)."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
            self._reaper = None
        await asyncio.gather(*self._unloading, return_exceptions=True)

    def _expired(self, slot: _Slot) -> bool:
        keep = self.keep_alive_of(slot)
        return slot.leases == 0 and keep >= 0 and self.clock() - slot.last_used >= keep

    async def reap(self) -> list[str]:
        """Unload every model idle for longer than its ``keep_alive``; returns their ids."""
        done = []
        for slot in [s for s in self._slots.values() if self._expired(s)]:
            async with self._lock:
                if self._slots.get(slot.model_id) is slot and self._expired(slot):
                    await self._unload_slot(slot)
                    done.append(slot.model_id)
                    logger.info("Unloaded idle model %s (keep_alive %.0fs)", slot.model_id,
                                self.keep_alive_of(slot))
        return done

    async def _reap_forever(self) -> None:
        interval = min(1.0, max(0.05, self.keep_alive / 4)) if self.keep_alive >= 0 else 1.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except Exception:  # keep the timer alive; the next tick retries
                logger.exception("Unloading an idle model failed")
