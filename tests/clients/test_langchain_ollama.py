"""LangChain's ``ChatOllama`` (langchain-ollama), unchanged, against a live LocalLoom server."""

from __future__ import annotations

from langchain_ollama import ChatOllama
from server_harness import LiveServer


def _model(server: LiveServer, **kwargs: object) -> ChatOllama:
    return ChatOllama(model="tiny", base_url=server.base_url.rstrip("/"), num_predict=6,
                      client_kwargs={"headers": {"Authorization": f"Bearer {server.token}"}},
                      **kwargs)  # type: ignore[arg-type]


def test_invoke_answers_with_usage(server: LiveServer) -> None:
    message = _model(server, seed=2).invoke("Hello")
    assert isinstance(message.content, str) and message.content
    assert message.usage_metadata is not None
    assert 0 < message.usage_metadata["output_tokens"] <= 6


def test_stream_yields_chunks_that_add_up(server: LiveServer) -> None:
    chunks = list(_model(server, temperature=0).stream("Hello"))
    assert len(chunks) >= 2
    text = "".join(str(c.content) for c in chunks)
    assert text and text == _model(server, temperature=0).invoke("Hello").content
