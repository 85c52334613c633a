"""The management endpoints' logic: catalog view, pull/load with progress, unload, status.

Example::

    service = ManagementService(engine=engine, models=manager, store=store, metrics=metrics,
                                drain=drain, settings=settings)
    listing = await service.list_models()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from localloom._version import __version__
from localloom.catalog.hardware import Hardware, detect_hardware, fit, format_gb_range
from localloom.config import Settings
from localloom.errors import LocalLoomError
from localloom.server.drain import Drain
from localloom.server.errors import reply_for
from localloom.server.management.protocol import (
    ActionResult,
    FitInfo,
    ModelInfo,
    ModelsResponse,
    PsEntry,
    PsResponse,
    StatusResponse,
)
from localloom.server.metrics import Gauges, Metrics
from localloom.server.models_manager import LoadedModel, ModelsManager
from localloom.server.sse import EventStreamResponse, shutdown_event, sse_event

if TYPE_CHECKING:
    from localloom.catalog.entry import ModelEntry
    from localloom.engine import AsyncEngine, InitProgressReport
    from localloom.store import ModelStore

__all__ = ["ManagementService"]

T = TypeVar("T")
_Report = Callable[[dict[str, Any]], None]
_Work = Callable[[_Report], Coroutine[Any, Any, dict[str, Any]]]
_HARDWARE_TTL = 10.0  # seconds: free RAM moves, but detection is not free


class ManagementService:
    """Serves ``/api/*``, ``/health`` and ``/metrics``."""

    def __init__(self, *, engine: AsyncEngine, models: ModelsManager, store: ModelStore,
                 metrics: Metrics, drain: Drain, settings: Settings,
                 in_flight: Callable[[], int] = lambda: 0) -> None:
        self.engine = engine
        self.models = models
        self.store = store
        self.metrics = metrics
        self.drain = drain
        self.settings = settings
        self.in_flight = in_flight
        self.started = time.monotonic()
        self._hardware: tuple[float, Hardware] | None = None
        # Pulls and loads finish even if the client that asked goes away.
        self._background: set[asyncio.Task[Any]] = set()

    async def hardware(self) -> Hardware:
        """This machine, measured at most every few seconds."""
        now = time.monotonic()
        if self._hardware is None or now - self._hardware[0] > _HARDWARE_TTL:
            self._hardware = (now, await asyncio.to_thread(detect_hardware))
        return self._hardware[1]

    async def list_models(self) -> ModelsResponse:
        """Every catalog entry with fit, cache and load state."""
        hw = await self.hardware()
        remote = self.engine.remote_models()  # an upstream's model shadows a local one
        entries = [e for e in self.models.catalog.entries() if e.id not in remote]
        cached = await asyncio.to_thread(lambda: [self.store.is_cached(e) for e in entries])
        contexts = await self._loaded_contexts()
        models = [self._info(e, hw, c, contexts.get(e.id), self.settings)
                  for e, c in zip(entries, cached, strict=True)]
        models += [await self._remote_info(m, names) for m, names in remote.items()]
        problems = [str(p) for p in self.models.catalog.problems]
        return ModelsResponse(models=models, problems=problems)

    async def _loaded_contexts(self) -> dict[str, int]:
        """Per-request context of each loaded model, as llama.cpp made it."""
        out: dict[str, int] = {}
        for model_id in self.models.loaded:
            try:
                out[model_id] = int((await self.engine.model_info(model_id)).n_ctx)
            except LocalLoomError:  # unloaded meanwhile: the planned figure will do
                continue
        return out

    async def _remote_info(self, model_id: str, upstreams: list[str]) -> ModelInfo:
        """A model an upstream serves, as the web UI lists it (ready, nothing to download)."""
        n_ctx = int((await self.engine.model_info(model_id)).n_ctx)
        where = ", ".join(upstreams)
        return ModelInfo(
            id=model_id, display_name=model_id, description=f"Served by upstream {where}.",
            download_size=0, ram_min_gb=0.0, ram_max_gb=0.0, ram="remote",
            context_length=n_ctx, runtime_context=n_ctx, runtime_context_measured=False,
            speed="", quality="", prompt_style="chat", capabilities=["chat", "completion"],
            capability_label="", source="upstream", tags=["remote"], aliases=[], cached=True,
            loaded=True, remote=where,
            fit=FitInfo(status="fits", label="remote", reason=f"Runs on {where}.",
                        device="cpu"))

    @staticmethod
    def _info(entry: ModelEntry, hw: Hardware, cached: bool, loaded_ctx: int | None,
              settings: Settings) -> ModelInfo:
        f = fit(entry, hw)
        # The same rule as the engine's LlamaContext: the setting, else the trained context
        # capped; the catalog's trained context stands in for the GGUF header's.
        planned = settings.n_ctx or min(entry.context_length, settings.max_default_ctx)
        return ModelInfo(
            id=entry.id, display_name=entry.display_name, description=entry.description,
            download_size=entry.download_size, ram_min_gb=entry.ram_min_gb,
            ram_max_gb=entry.ram_max_gb, ram=format_gb_range(entry.ram_min_gb, entry.ram_max_gb),
            context_length=entry.context_length,
            runtime_context=planned if loaded_ctx is None else loaded_ctx,
            runtime_context_measured=loaded_ctx is not None,
            speed=entry.speed, quality=entry.quality,
            prompt_style=entry.prompt_style, capabilities=list(entry.capabilities),
            capability_label=entry.capability_label, source=entry.source.kind,
            tags=list(entry.tags),
            aliases=list(entry.aliases), cached=cached, loaded=loaded_ctx is not None,
            fit=FitInfo(status=f.status, label=f.label, reason=f.reason, device=f.device))

    # -- pull / load with progress -------------------------------------------------------

    def pull(self, model_id: str) -> EventStreamResponse:
        """Download and verify a model; progress as SSE (``progress``, then ``done``/``error``)."""
        entry = self.models.catalog.get(model_id)

        async def work(report: _Report) -> dict[str, Any]:
            def progress(fraction: float, bytes_done: int, bytes_total: int, text: str) -> None:
                report({"progress": fraction, "bytes_done": bytes_done,
                        "bytes_total": bytes_total, "text": text})

            await _in_daemon_thread(lambda: self.store.pull(entry, progress=progress))
            return {"id": entry.id, "cached": True}

        return self._progress_response(work)

    def load(self, model_id: str) -> EventStreamResponse:
        """Load a model (pulling it first if needed); progress as SSE."""
        canonical = self.models.resolve(model_id)

        async def work(report: _Report) -> dict[str, Any]:
            def progress(r: InitProgressReport) -> None:
                report({"progress": r.progress, "text": r.text,
                        "time_elapsed": r.time_elapsed})

            started = time.monotonic()
            already = self.models.is_loaded(canonical)
            await self.models.load(canonical, progress)
            text = f"{canonical} is already loaded" if already else f"{canonical} is loaded"
            report({"progress": 1.0, "text": text,
                    "time_elapsed": time.monotonic() - started})
            return {"id": canonical, "load_time_s": round(time.monotonic() - started, 3)}

        return self._progress_response(work)

    def _progress_response(self, work: _Work
                           ) -> EventStreamResponse:
        return EventStreamResponse(self._progress_events(work), drain=self.drain,
                                   on_abort=lambda: shutdown_event("error"))

    async def _progress_events(self, work: _Work
                               ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def report(payload: dict[str, Any]) -> None:  # from any thread
            loop.call_soon_threadsafe(queue.put_nowait, payload)

        task = loop.create_task(work(report))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        getter: asyncio.Future[dict[str, Any]] | None = None
        try:
            while not task.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    latest = getter.result()
                    getter = None
                    while not queue.empty():  # a burst of reports: only the newest matters
                        latest = queue.get_nowait()
                    yield sse_event(latest, "progress")
            await asyncio.sleep(0)  # let reports scheduled by the worker thread land
            last: dict[str, Any] | None = None
            while not queue.empty():
                last = queue.get_nowait()
            if last is not None:
                yield sse_event(last, "progress")
        finally:
            if getter is not None:
                getter.cancel()
        error = task.exception()
        if error is None:
            yield sse_event(task.result(), "done")
        else:
            yield sse_event(reply_for(error).body, "error")

    # -- unload / delete -----------------------------------------------------------------

    async def unload(self, model_id: str) -> ActionResult:
        """Unload a model now."""
        canonical = self.models.resolve(model_id)
        done = await self.models.unload(canonical)
        message = f"{canonical} was unloaded." if done else f"{canonical} was not loaded."
        return ActionResult(id=canonical, unloaded=done, message=message)

    async def delete(self, model_id: str) -> ActionResult:
        """Unload the model and remove its downloaded file (a local model's file is kept)."""
        entry = self.models.catalog.get(model_id)
        unloaded = await self.models.unload(entry.id)
        deleted = await asyncio.to_thread(self.store.delete, entry)
        if entry.source.kind == "local":
            message = (f"{entry.id} uses your own file, which LocalLoom never deletes; remove "
                       "it from models.toml to forget it.")
        elif deleted:
            message = f"{entry.id}'s downloaded file was deleted."
        else:
            message = f"{entry.id} had no downloaded file."
        return ActionResult(id=entry.id, unloaded=unloaded, deleted=deleted, message=message)

    # -- status and metrics ----------------------------------------------------------------

    def ps(self) -> PsResponse:
        """Loaded models with their ages and expiry."""
        return PsResponse(models=[self._ps_entry(m) for m in self.models.ps()],
                          keep_alive_s=self.settings.keep_alive,
                          max_loaded_models=self.settings.max_loaded_models)

    def _ps_entry(self, loaded: LoadedModel) -> PsEntry:
        # Ollama's fields first (its clients read name, size, expires_at), then LocalLoom's.
        from localloom.server.ollama.names import facts, iso_time

        entry = self.models.catalog.get(loaded.id) if loaded.id in self.models.catalog else None
        known = facts(entry) if entry is not None else {"name": loaded.id, "model": loaded.id}
        ctx = self.settings.n_ctx or min(entry.context_length if entry else 0,
                                         self.settings.max_default_ctx)
        # Never (keep_alive < 0): far ahead, as Ollama shows it; in use: the keep-alive ahead.
        ahead = loaded.expires_in_s
        if ahead is None:
            keep = self.settings.keep_alive
            ahead = keep if keep >= 0 and loaded.active_requests else 2 ** 31
        return PsEntry(**known, expires_at=iso_time(time.time() + ahead),
                       context_length=ctx, **dataclasses.asdict(loaded))

    async def runtime(self) -> dict[str, dict[str, Any]]:
        """Engine statistics per loaded model (empty for models that vanished meanwhile)."""
        out: dict[str, dict[str, Any]] = {}
        for model_id in self.models.loaded:
            try:
                stats = await self.engine.runtime_stats(model_id)
            except LocalLoomError:
                continue
            out[model_id] = (dataclasses.asdict(stats) if dataclasses.is_dataclass(stats)
                             and not isinstance(stats, type) else dict(vars(stats)))
        return out

    async def status(self) -> StatusResponse:
        """Version, uptime, settings that shape serving, loaded models and engine stats."""
        hw = await self.hardware()
        s = self.settings
        return StatusResponse(
            version=__version__, uptime_s=time.monotonic() - self.started,
            draining=self.drain.draining,
            settings={"n_parallel": s.n_parallel, "max_queue": s.max_queue, "n_ctx": s.n_ctx,
                      "keep_alive": s.keep_alive, "max_loaded_models": s.max_loaded_models,
                      "drain_timeout": s.drain_timeout, "offline": s.is_offline},
            loaded=self.ps().models, runtime=await self.runtime(),
            hardware={"total_ram_gb": round(hw.total_ram_gb, 2),
                      "available_ram_gb": round(hw.available_ram_gb, 2),
                      "gpu_offload": hw.gpu_offload, "gpus": [g.name for g in hw.gpus],
                      "logical_cores": hw.logical_cores})

    async def metrics_text(self) -> str:
        """The Prometheus exposition, with gauges read from the engine now."""
        runtime = await self.runtime()
        waiting = sum(int(r.get("requests_waiting", 0)) for r in runtime.values())
        running = sum(int(r.get("requests_running", 0)) for r in runtime.values())
        gauges = Gauges(queue_depth=waiting, running=running,
                        loaded_models=self.models.loaded, in_flight=self.in_flight())
        upstreams = self.engine.engine.upstreams  # per-upstream counters (localloom.upstream)
        extra = "\n".join(upstreams.metrics_lines()) + "\n" if upstreams is not None else ""
        return self.metrics.render(gauges) + extra


async def _in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a daemon thread: a download must not hold up the process at exit.

    The store keeps a resumable ``.part`` and promotes a file only after verifying it, so a
    download cut off by the exit is safe.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server has exited
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name="localloom-pull", daemon=True).start()
    return await future
