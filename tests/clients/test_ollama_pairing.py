"""Ollama's routes under pairing: what a paired extension's token (Page Assist is one) may call.

Scopes: chat/generate/embed need "tasks"; tags/version/show need "models"; pull needs "pull"
(and so does using a model that is not downloaded, since loading would download it);
/api/delete is never allowed to a paired token. The real `ollama` client carries the token.
"""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest
from server_harness import LiveServer

ORIGIN = "chrome-extension://" + "b" * 32
PULLER = "chrome-extension://" + "c" * 32
OTHER = "chrome-extension://" + "d" * 32
NOT_DOWNLOADED = "Qwen2.5-0.5B-Instruct-Q4_K_M"  # a catalog model this server's home lacks


def _pair(server: LiveServer, origin: str, *, allow_pull: bool) -> str:
    reply = server.http().post("/api/pairings", json={"origin": origin,
                                                      "allow_pull": allow_pull})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["token"])


@pytest.fixture(scope="module")
def paired(server: LiveServer) -> Iterator[tuple[ollama.Client, ollama.Client]]:
    """Clients as two paired extensions send: without and with the pull scope."""
    clients = tuple(
        ollama.Client(host=server.base_url.rstrip("/"),
                      headers={"Authorization": f"Bearer {_pair(server, o, allow_pull=p)}",
                               "Origin": o})
        for o, p in ((ORIGIN, False), (PULLER, True)))
    yield clients[0], clients[1]
    for origin in (ORIGIN, PULLER):
        server.http().delete(f"/api/pairings/{origin}")


def test_a_paired_token_chats_generates_and_lists(
        paired: tuple[ollama.Client, ollama.Client]) -> None:
    client, _ = paired
    answer = client.chat(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                         options={"num_predict": 2})
    assert answer.done and answer.message.role == "assistant"
    assert client.generate(model="tiny", prompt="Hi", options={"num_predict": 2}).done
    assert "tiny:latest" in [m.model for m in client.list().models]
    assert client.show("tiny").details is not None
    # The tiny model has no pooling: the route is allowed, the model refuses (400, not 403).
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="tiny", input="x")
    assert err.value.status_code == 400


def test_without_pull_a_paired_token_cannot_pull_or_load_a_missing_model(
        paired: tuple[ollama.Client, ollama.Client]) -> None:
    client, _ = paired
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("tiny", stream=False)
    assert err.value.status_code == 403 and "--allow-pull" in err.value.error
    for call in (lambda: client.chat(model=NOT_DOWNLOADED,
                                     messages=[{"role": "user", "content": "Hi"}]),
                 lambda: client.generate(model=NOT_DOWNLOADED, prompt="Hi"),
                 lambda: client.generate(model=NOT_DOWNLOADED),  # load only
                 lambda: client.embed(model=NOT_DOWNLOADED, input="x")):
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 403, err.value.error
        assert "not downloaded" in err.value.error and "--allow-pull" in err.value.error


def test_with_pull_a_paired_token_pulls_but_never_deletes(
        paired: tuple[ollama.Client, ollama.Client]) -> None:
    client, puller = paired
    assert puller.pull("tiny", stream=False).status == "success"
    for who in (client, puller):
        with pytest.raises(ollama.ResponseError) as err:
            who.delete("tiny")
        assert err.value.status_code == 403 and "DELETE /api/delete" in err.value.error


def test_a_paired_token_is_refused_from_another_origin(server: LiveServer,
        paired: tuple[ollama.Client, ollama.Client]) -> None:
    token = _pair(server, OTHER, allow_pull=False)
    reply = server.http().get("/api/tags", headers={"Authorization": f"Bearer {token}",
                                                    "Origin": PULLER})
    assert reply.status_code == 403 and OTHER in str(reply.json()["error"])
    server.http().delete(f"/api/pairings/{OTHER}")
