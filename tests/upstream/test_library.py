"""The library surface: ``Engine(upstream=...)`` and ``AsyncEngine(upstream=...)`` against a
real HTTP server on 127.0.0.1, the config file's checks, and the breaker's transitions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from faulty import FaultyServer

from localloom import AsyncEngine, Engine
from localloom.errors import ConfigError, ModelNotFoundError
from localloom.upstream import BreakerState, CircuitBreaker, load_upstreams, parse_cli_upstream

ANSWER = "Alpha is first.\nBeta is second.\nGamma is third.\n"


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyServer]:
    server = FaultyServer().start()
    yield server
    server.stop()


def test_engine_serves_an_upstreams_models(faulty: FaultyServer) -> None:
    with Engine(upstream=[f"f={faulty.url}"]) as engine:
        assert engine.remote_models()["ok"] == ["f"]
        reply = engine.chat.completions.create(model="ok", messages=[{"role": "user",
                                                                      "content": "x"}])
        assert reply.choices[0].message.content == ANSWER
        assert reply.choices[0].finish_reason == "length" and reply.model == "ok"
        assert reply.usage is not None
        assert reply.usage.prompt_tokens == 5 and reply.usage.completion_tokens == 3
        text = "".join(c.choices[0].text for c in engine.completions.create(
            model="ok", prompt="x", stream=True))
        assert text == ANSWER
        assert engine.model_info("ok").n_ctx == 4096


def test_a_model_the_upstream_lacks_is_a_not_found_naming_it(faulty: FaultyServer) -> None:
    config = parse_cli_upstream(f"g={faulty.url}").model_copy(
        update={"models": {"mine": "missing"}})
    with Engine(upstream=[config]) as engine, pytest.raises(ModelNotFoundError, match="'g'"):
        engine.chat.completions.create(model="mine", messages=[{"role": "user",
                                                                "content": "x"}])


def test_async_engine_streams_from_an_upstream(faulty: FaultyServer) -> None:
    async def run() -> str:
        async with AsyncEngine(upstream=[f"f={faulty.url}"]) as engine:
            stream = await engine.chat.completions.create(
                model="ok", messages=[{"role": "user", "content": "x"}], stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])

    assert asyncio.run(run()) == ANSWER


def test_config_refuses_a_plain_key_and_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text('[[upstream]]\nname = "a"\nurl = "http://x:1"\napi_key = "sk-1"\n')
    with pytest.raises(ConfigError, match="api_key_env"):
        load_upstreams(path)
    path.write_text('[[upstream]]\nname = "a"\nurl = "ftp://x"\n')
    with pytest.raises(ConfigError, match="'url'"):
        load_upstreams(path)
    with pytest.raises(ConfigError, match="NAME=URL"):
        parse_cli_upstream("http://x:1")
    path.write_text('[[upstream]]\nname = "a"\nurl = "http://x:1"\napi_key_env = "NOPE_X"\n')
    with pytest.raises(ConfigError, match="NOPE_X"):
        load_upstreams(path)[0].api_key()
    assert parse_cli_upstream("a=http://h:8080").url == "http://h:8080/v1"


def test_breaker_opens_after_the_threshold_and_closes_after_a_trial() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=5.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state.value == "open" and not breaker.allow()
    assert breaker.retry_after() == 5.0
    now[0] = 5.0
    assert breaker.allow() and breaker.state.value == "half_open"
    assert not breaker.allow()  # one trial at a time
    breaker.failure()
    assert breaker.state.value == "open"
    now[0] = 10.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state.value == "closed" and breaker.opened_total == 2


def test_config_file_problems_are_all_named(tmp_path: Path) -> None:
    path = tmp_path / "upstreams.toml"
    path.write_text('[[upstream]]\nname = "a"\nurl = "http://x:1"\nweight = 0\n'
                    'max_concurrency = 0\n')
    with pytest.raises(ConfigError, match=r"'weight'.*'max_concurrency'"):
        load_upstreams(path)
    path.write_text("[[upstream]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_upstreams(path)
    assert load_upstreams(tmp_path / "missing.toml") == []
