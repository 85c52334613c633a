"""EventStreamResponse runs its on_close however the response ends (the lease leak fix)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import Message

from localloom.server.drain import Drain
from localloom.server.sse import EventStreamResponse


def _events(started: list[bool]) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        started.append(True)
        yield b"data: 1\n\n"

    return gen()


async def _never_disconnects() -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


def _run(send: Any) -> tuple[list[str], list[bool]]:
    closed: list[str] = []
    started: list[bool] = []

    async def close() -> None:
        closed.append("closed")

    async def main() -> None:
        response = EventStreamResponse(_events(started), drain=Drain(1.0), on_close=close)
        await response({"type": "http"}, _never_disconnects, send)

    with contextlib.suppress(OSError):  # the first test's send raises it
        asyncio.run(main())
    return closed, started


def test_on_close_runs_when_the_client_left_before_the_first_byte() -> None:
    # The response never starts, so the generator (whose finally would release the model
    # lease) never runs: only on_close can give the lease back.
    async def send(message: dict[str, Any]) -> None:
        raise OSError("client went away")

    closed, started = _run(send)
    assert closed == ["closed"] and started == []


def test_on_close_runs_once_after_a_whole_stream() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    closed, started = _run(send)
    assert closed == ["closed"] and started == [True]
    assert sent[0]["type"] == "http.response.start"
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_cancelled_response_still_closes() -> None:
    async def send(message: Message) -> None:
        await asyncio.sleep(3600)  # a stuck client; the task is cancelled

    closed: list[str] = []

    async def close() -> None:
        closed.append("closed")

    async def main() -> None:
        response = EventStreamResponse(_events([]), drain=Drain(1.0), on_close=close)
        task = asyncio.ensure_future(response({"type": "http"}, _never_disconnects, send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert closed == ["closed"]
