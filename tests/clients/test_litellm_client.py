"""litellm's ``openai/...`` and ``ollama_chat/...`` routes against a live LocalLoom server."""

from __future__ import annotations

from typing import Any

import litellm
from server_harness import LiveServer

_HI = [{"role": "user", "content": "Hi"}]


def _text(response: Any) -> str:
    return str(response.choices[0].message.content or "")


def test_openai_route_completes_and_streams(server: LiveServer) -> None:
    where = {"api_base": server.base_url + "v1", "api_key": server.token}
    reply = litellm.completion(model="openai/tiny", messages=_HI, max_tokens=6, seed=1,
                               **where)
    assert _text(reply) and reply.usage.completion_tokens <= 6
    parts = list(litellm.completion(model="openai/tiny", messages=_HI, max_tokens=6,
                                    stream=True, **where))
    assert "".join(p.choices[0].delta.content or "" for p in parts)


def test_ollama_chat_route_completes_and_streams(server: LiveServer) -> None:
    where = {"api_base": server.base_url.rstrip("/"),
             "extra_headers": {"Authorization": f"Bearer {server.token}"}}
    reply = litellm.completion(model="ollama_chat/tiny", messages=_HI, max_tokens=6, **where)
    assert _text(reply) and 0 < reply.usage.completion_tokens <= 6
    parts = list(litellm.completion(model="ollama_chat/tiny", messages=_HI, max_tokens=6,
                                    stream=True, **where))
    assert "".join(p.choices[0].delta.content or "" for p in parts)


def test_ollama_route_uses_generate(server: LiveServer) -> None:
    reply = litellm.completion(model="ollama/tiny", messages=_HI, max_tokens=5,
                               api_base=server.base_url.rstrip("/"),
                               extra_headers={"Authorization": f"Bearer {server.token}"})
    assert _text(reply)
