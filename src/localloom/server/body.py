"""Request bodies parsed once, in a worker thread, into their typed request models.

A body may be 16 MiB (400,000 messages): reading JSON and validating it takes seconds, so
neither runs on the event loop. A route declares the typed model as a dependency and
hands it on; nothing after the route parses the body again.

Example::

    ChatBody = Annotated[ChatCompletionRequest, Depends(typed_body(ChatCompletionRequest))]

    @router.post("/v1/chat/completions")
    async def chat_completions(body: ChatBody, request: Request) -> Response: ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from fastapi import Request

from localloom.engine.guards import check_body
from localloom.errors import InvalidRequestError

__all__ = ["Parseable", "json_object", "typed_body"]


class Parseable(Protocol):
    """A request model with LocalLoom's ``parse`` (undeclared fields named, bounds
    checked, errors as :class:`InvalidRequestError`)."""

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Any:
        """Validate one JSON object."""


_P = TypeVar("_P", bound=Parseable)


def json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, within the size guards; InvalidRequestError otherwise."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested 100,000 deep
        raise InvalidRequestError(
            f"The request body is not valid JSON ({exc}). Send a JSON object.") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    check_body(data)
    return data


def typed_body(model: type[_P]) -> Callable[[Request], Awaitable[_P]]:
    """A FastAPI dependency: the request's body parsed into ``model``, off the loop."""
    async def parse(request: Request) -> _P:
        raw = await request.body()
        parsed: _P = await asyncio.to_thread(lambda: model.parse(json_object(raw)))
        return parsed

    parse.__name__ = f"parse_{model.__name__}"
    return parse
