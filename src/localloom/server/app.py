"""``create_app(settings)``: the FastAPI app with its services wired on ``app.state``.

Nothing is global: the engine, catalog and store are built here unless injected, and each
endpoint group reads its service from ``request.app.state``.

Example::

    from localloom import Settings
    from localloom.server import create_app
    app = create_app(Settings())            # token from the config dir, engine built here
    # uvicorn.run(app, host="127.0.0.1", port=8765)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from localloom._version import __version__
from localloom.config import Settings
from localloom.server import (
    history,
    management,
    ollama,
    openai,
    pairing,
    responses,
    tasks,
    ui,
)
from localloom.server.drain import Drain, DrainMiddleware
from localloom.server.errors import install_error_handlers
from localloom.server.limits import MAX_BODY_BYTES, LimitsMiddleware, max_requests
from localloom.server.metrics import Metrics, MetricsMiddleware
from localloom.server.models_manager import ModelsManager
from localloom.server.security import SecurityMiddleware, SecurityPolicy, load_or_create_token

if TYPE_CHECKING:
    from localloom.catalog.catalog import Catalog
    from localloom.engine import AsyncEngine
    from localloom.store import ModelStore

__all__ = ["ServerParts", "create_app"]

logger = logging.getLogger("localloom.server")


@dataclass
class ServerParts:
    """Everything one server instance owns; kept on ``app.state.parts``."""

    settings: Settings
    engine: AsyncEngine
    catalog: Catalog
    store: ModelStore
    models: ModelsManager
    metrics: Metrics
    drain: Drain
    policy: SecurityPolicy
    owns_engine: bool


def _build_parts(settings: Settings, engine: AsyncEngine | None, catalog: Catalog | None,
                 store: ModelStore | None, token: str | None) -> ServerParts:
    from localloom.catalog.catalog import Catalog
    from localloom.store import ModelStore

    catalog = catalog if catalog is not None else Catalog(settings)
    store = store if store is not None else ModelStore(settings)
    owns_engine = engine is None
    if engine is None:
        from localloom.engine import AsyncEngine

        engine = AsyncEngine(settings, catalog=catalog, store=store)
    token = token if token is not None else load_or_create_token(settings.config_dir)
    return ServerParts(
        settings=settings, engine=engine, catalog=catalog, store=store,
        models=ModelsManager(engine, catalog, settings), metrics=Metrics(),
        drain=Drain(settings.drain_timeout), policy=SecurityPolicy.from_settings(settings, token),
        owns_engine=owns_engine)


def create_app(settings: Settings | None = None, *, engine: AsyncEngine | None = None,
               catalog: Catalog | None = None, store: ModelStore | None = None,
               token: str | None = None) -> FastAPI:
    """Build the server app. Injected parts are used as given (and not closed on shutdown).

    ``token`` defaults to the one in ``settings.config_dir`` (created on first start).
    """
    settings = settings if settings is not None else Settings()
    parts = _build_parts(settings, engine, catalog, store, token)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        parts.drain.bind(asyncio.get_running_loop())
        parts.models.start()
        indexer = app.state.history.indexer
        if indexer is not None:
            indexer.start()  # embeds new saved results in the background
        try:
            yield
        finally:
            if indexer is not None:
                await indexer.stop()
            await _shutdown(parts)

    app = FastAPI(title="LocalLoom", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.parts = parts
    app.state.openai = openai.OpenAIService(
        engine=parts.engine, models=parts.models, store=parts.store, metrics=parts.metrics,
        drain=parts.drain)
    app.state.management = management.ManagementService(
        engine=parts.engine, models=parts.models, store=parts.store, metrics=parts.metrics,
        drain=parts.drain, settings=settings, in_flight=lambda: parts.drain.active)
    app.state.responses = responses.ResponsesService(
        engine=parts.engine, models=parts.models, metrics=parts.metrics, drain=parts.drain)
    app.state.ollama = ollama.OllamaService(
        engine=parts.engine, models=parts.models, store=parts.store, metrics=parts.metrics,
        drain=parts.drain, openai=app.state.openai, management=app.state.management)
    app.state.history = history.HistoryService(settings, engine=parts.engine,
                                               models=parts.models)
    history_service = app.state.history
    app.state.tasks = tasks.TasksService(  # saves into the history service's one store
        engine=parts.engine, models=parts.models, drain=parts.drain, settings=settings,
        history=lambda: history_service.store)
    app.include_router(responses.router)  # before openai's catch-all under /v1
    app.include_router(openai.router)
    app.include_router(management.router)
    app.include_router(ollama.router)
    app.include_router(tasks.router)
    app.include_router(history.router)
    app.include_router(ui.router)
    app.include_router(pairing.router)
    install_error_handlers(app)
    _document_bodies(app)
    # Added last = outermost: metrics see refusals too; the drain counts only admitted work.
    # The limits answer 413/503 in OpenAI's JSON (FastAPI's own body limit answers in text).
    app.add_middleware(DrainMiddleware, drain=parts.drain)
    app.add_middleware(LimitsMiddleware, max_body_bytes=MAX_BODY_BYTES,
                       max_requests=max_requests(settings), body_timeout=settings.body_timeout)
    app.add_middleware(SecurityMiddleware, policy=parts.policy)
    routes = [*responses.router.routes, *openai.router.routes, *management.router.routes,
              *ollama.router.routes, *tasks.router.routes, *history.router.routes,
              *ui.router.routes, *pairing.router.routes]
    app.add_middleware(MetricsMiddleware, metrics=parts.metrics, routes=routes)
    return app


def _document_bodies(app: FastAPI) -> None:
    """Add the request schemas that routes document but do not declare to /openapi.json."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                openai.openapi_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _shutdown(parts: ServerParts) -> None:
    parts.drain.begin()
    await parts.models.stop()
    if parts.owns_engine:
        try:
            await parts.engine.close()
        except Exception:  # shutting down anyway; report and go on
            logger.exception("Closing the engine failed")
