"""Helpers shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

from localloom.config import Settings
from localloom.engine import Engine

# One thread: the test machines are small and shared, and llama.cpp's thread barriers
# spin badly on oversubscribed cores; results do not depend on it.
TEST_THREADS = 1
CHAT = [{"role": "user", "content": "hello the cat"}]


def make_settings(tmp: Path, **overrides: object) -> Settings:
    """Settings for a test engine (user dirs under ``tmp``)."""
    values: dict[str, object] = {"home": tmp, "n_threads": TEST_THREADS, "n_parallel": 8,
                                 "n_ctx": 512}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def greedy_text(engine: Engine, content: str, max_tokens: int = 24) -> str:
    """The greedy chat answer to one user message."""
    r = engine.chat.completions.create(messages=[{"role": "user", "content": content}],
                                       temperature=0, max_tokens=max_tokens)
    return r.choices[0].message.content or ""
