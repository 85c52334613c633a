"""Stored responses for ``previous_response_id``: in memory, the newest ``cap`` kept.

Example::

    store = ResponseStore(cap=512)
    store.put(StoredResponse(body=..., messages=[...]))
    store.get("resp_...").messages       # the conversation up to and with that answer
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from localloom.errors import InvalidRequestError

__all__ = ["ResponseStore", "StoredResponse"]


@dataclass(frozen=True)
class StoredResponse:
    """A finished response: its wire body and the chat messages it continues from."""

    body: dict[str, Any]
    messages: list[dict[str, Any]]  # input turns plus the answer, without instructions

    @property
    def id(self) -> str:
        """The response's id (``resp_...``)."""
        return str(self.body["id"])


class ResponseStore:
    """The newest ``cap`` responses by id; older ones are forgotten (lost on restart)."""

    def __init__(self, cap: int = 512) -> None:
        self.cap = cap
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, item: StoredResponse) -> None:
        """Keep ``item``, forgetting the oldest beyond the cap."""
        with self._lock:
            self._items[item.id] = item
            while len(self._items) > self.cap:
                self._items.popitem(last=False)

    def get(self, response_id: str, *, param: str = "previous_response_id") -> StoredResponse:
        """The stored response, or a clear error saying why it is not there."""
        with self._lock:
            item = self._items.get(response_id)
        if item is None:
            raise InvalidRequestError(
                f"No stored response '{response_id[:80]}'. The server keeps the newest "
                f"{self.cap} responses made with store=true, in memory until it restarts; "
                "send the whole conversation as 'input' instead.", param=param)
        return item

    def delete(self, response_id: str) -> None:
        """Forget a response (an error if it is not stored)."""
        self.get(response_id, param="response_id")
        with self._lock:
            self._items.pop(response_id, None)
