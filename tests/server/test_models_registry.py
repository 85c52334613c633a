"""The server's model registry: the engine holds what is loaded, the manager its policy.

Real engine, real tiny GGUF under three catalog ids, a fake clock for keep-alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from server_harness import models_toml

from localloom.catalog.catalog import Catalog
from localloom.config import Settings
from localloom.engine import AsyncEngine
from localloom.errors import ServerBusyError
from localloom.server.models_manager import ModelsManager


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(tmp_path: Path, tiny_gguf: Path, body: Callable[..., Awaitable[None]], *,
         keep_alive: float = 300.0, max_loaded: int = 2) -> None:
    settings = Settings(home=tmp_path, n_threads=1, n_parallel=2, n_ctx=256,
                        keep_alive=keep_alive, max_loaded_models=max_loaded)
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    (settings.config_dir / "models.toml").write_text(
        models_toml({"a": tiny_gguf, "b": tiny_gguf, "c": tiny_gguf}), encoding="utf-8")

    async def main() -> None:
        catalog = Catalog(settings)
        engine = AsyncEngine(settings, catalog=catalog)
        clock = _Clock()
        try:
            await body(engine, ModelsManager(engine, catalog, settings, clock=clock), clock)
        finally:
            await engine.close()

    asyncio.run(main())


def test_an_idle_model_is_unloaded_once_its_keep_alive_has_passed(
        tmp_path: Path, tiny_gguf: Path) -> None:
    async def body(engine: AsyncEngine, models: ModelsManager, clock: _Clock) -> None:
        lease = await models.acquire("a", keep_alive=10)
        clock.now += 60
        assert await models.reap() == []  # leased: the timer does not count
        lease.release()
        clock.now += 9
        assert await models.reap() == [] and engine.loaded_models == ["a"]
        assert models.ps()[0].expires_in_s == pytest.approx(1.0)
        clock.now += 2
        assert await models.reap() == ["a"]
        assert engine.loaded_models == [] and models.loaded == []

    _run(tmp_path, tiny_gguf, body)


def test_a_full_server_evicts_the_least_recently_used_idle_model(
        tmp_path: Path, tiny_gguf: Path) -> None:
    async def body(engine: AsyncEngine, models: ModelsManager, clock: _Clock) -> None:
        for model_id in ("a", "b"):
            (await models.acquire(model_id)).release()
            clock.now += 1
        (await models.acquire("a")).release()  # a is now used more recently than b
        clock.now += 1
        lease = await models.acquire("c")
        assert sorted(engine.loaded_models) == ["a", "c"]
        assert models.loaded == ["a", "c"]  # most recently used last
        lease.release()

    _run(tmp_path, tiny_gguf, body)


def test_a_streaming_lease_keeps_its_model_from_eviction(tmp_path: Path,
                                                         tiny_gguf: Path) -> None:
    async def body(engine: AsyncEngine, models: ModelsManager, clock: _Clock) -> None:
        lease = await models.acquire("a")
        stream = await engine.chat.completions.create(
            model=lease.model_id, messages=[{"role": "user", "content": "Hi"}], stream=True,
            max_tokens=8, temperature=0, logit_bias={"2": -100.0})
        first = await stream.__anext__()
        with pytest.raises(ServerBusyError, match="serving requests"):
            await models.acquire("b")
        rest = [chunk async for chunk in stream]  # the stream was not cut
        assert first.choices and rest[-1].choices[0].finish_reason == "length"
        assert models.ps()[0].active_requests == 1
        lease.release()
        (await models.acquire("b")).release()  # now "a" may go
        assert engine.loaded_models == ["b"]

    _run(tmp_path, tiny_gguf, body, max_loaded=1)


def test_models_the_engine_already_holds_count_without_being_adopted(
        tmp_path: Path, tiny_gguf: Path) -> None:
    async def body(engine: AsyncEngine, models: ModelsManager, clock: _Clock) -> None:
        await engine.load("a")  # an injected engine that arrives with a model loaded
        assert models.loaded == ["a"] and models.is_loaded("a")
        assert models.required_model(None) == "a" and models.default_model(None) == "a"
        (await models.acquire("b")).release()  # the cap of one evicts it
        assert engine.loaded_models == ["b"]

    _run(tmp_path, tiny_gguf, body, max_loaded=1)


def test_keep_alive_zero_unloads_as_soon_as_the_last_lease_ends(tmp_path: Path,
                                                                tiny_gguf: Path) -> None:
    async def body(engine: AsyncEngine, models: ModelsManager, clock: _Clock) -> None:
        first = await models.acquire("a", keep_alive=0)
        second = await models.acquire("a", keep_alive=0)
        first.release()
        await asyncio.sleep(0.05)
        assert engine.loaded_models == ["a"]  # still held by the second request
        second.release()
        await models.stop()  # waits for the unload under way
        assert engine.loaded_models == []

    _run(tmp_path, tiny_gguf, body)
