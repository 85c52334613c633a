"""NDJSON streams for Ollama's API: the response type, one line, and pull progress.

Example::

    return NdjsonResponse((ndjson(e) async for e in pull_events(store, entry, digest)),
                          drain=drain)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from localloom.errors import LocalLoomError
from localloom.server.sse import EventStreamResponse

if TYPE_CHECKING:
    from localloom.catalog import ModelEntry
    from localloom.store import ModelStore

__all__ = ["NdjsonResponse", "ndjson", "pull_events"]


class NdjsonResponse(EventStreamResponse):
    """``application/x-ndjson`` that stops its producer when the client leaves."""

    media_type = "application/x-ndjson"


def ndjson(data: Any) -> bytes:
    """One JSON object on one line."""
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


async def pull_events(store: ModelStore, entry: ModelEntry,
                      digest: str) -> AsyncIterator[dict[str, Any]]:
    """Ollama's pull statuses: manifest, the file's bytes, verify, write, success (or error)."""
    from localloom.server.management.service import _in_daemon_thread

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    status = f"pulling {digest[:12]}"

    def progress(fraction: float, done: int, total: int, text: str) -> None:  # any thread
        event = {"status": status, "digest": f"sha256:{digest}", "total": total,
                 "completed": done}
        loop.call_soon_threadsafe(queue.put_nowait, event)

    yield {"status": "pulling manifest"}
    task = loop.create_task(_in_daemon_thread(lambda: store.pull(entry, progress=progress)))
    try:
        while not task.done() or not queue.empty():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
        task.result()
    except LocalLoomError as exc:
        yield {"error": str(exc)}
        return
    finally:
        if not task.done():
            task.cancel()
    size = entry.source.size or entry.download_size
    yield {"status": status, "digest": f"sha256:{digest}", "total": size, "completed": size}
    for final in ("verifying sha256 digest", "writing manifest", "success"):
        yield {"status": final}
