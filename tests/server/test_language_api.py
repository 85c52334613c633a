"""`POST /api/language`: the text's language with confidences, for pages' LanguageDetector
(through the extension, whose pairing token may call it)."""

from __future__ import annotations

from server_harness import MODEL, LiveServer
from typer.testing import CliRunner

from localloom.cli import app as cli_app


def test_detects_the_language_with_candidates_most_likely_first(server: LiveServer) -> None:
    with server.http() as http:
        reply = http.post("/api/language",
                          json={"text": "El gato duerme en la casa y la casa es muy grande."})
        assert reply.status_code == 200, reply.text
        data = reply.json()
        assert data["language"] == "es" and 0.5 < data["confidence"] <= 1
        assert data["candidates"][0] == {"language": "es", "confidence": data["confidence"]}
        confidences = [c["confidence"] for c in data["candidates"]]
        assert confidences == sorted(confidences, reverse=True)
        # Nothing to go on: "und" with confidence 0.
        empty = http.post("/api/language", json={"text": "1234"}).json()
        assert empty == {"language": "und", "confidence": 0.0, "candidates": []}
        bad = http.post("/api/language", json={"text": "hola", "model": "x"})
        assert bad.status_code in (400, 422) and "model" in bad.text


def test_a_paired_extensions_token_may_call_it(server: LiveServer) -> None:
    origin = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
    result = CliRunner().invoke(cli_app, ["pair", origin],
                                env={"LOCALLOOM_HOME": str(server.home)})
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    with server.http(auth=False) as http:
        reply = http.post("/api/language", json={"text": "The cat sleeps in the big house."},
                          headers={"Authorization": f"Bearer {token}", "Origin": origin})
        assert reply.status_code == 200, reply.text
        assert reply.json()["language"] == "en"


def test_the_token_may_chat_but_not_make_the_server_download_a_model(
        server: LiveServer) -> None:
    origin = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
    result = CliRunner().invoke(cli_app, ["pair", origin],
                                env={"LOCALLOOM_HOME": str(server.home)})
    token = result.output.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}", "Origin": origin}
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    with server.http(auth=False) as http:
        reply = http.post("/v1/chat/completions", json={**chat, "model": MODEL},
                          headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["role"] == "assistant"
        # A catalog model that is not downloaded: the pairing has no `pull` scope.
        missing = "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC"
        refused = http.post("/v1/chat/completions", json={**chat, "model": missing},
                            headers=headers)
        assert refused.status_code == 403, refused.text
        assert "--allow-pull" in refused.json()["error"]["message"]
        # Other OpenAI routes stay closed to it.
        assert http.post("/v1/completions", json={"model": MODEL, "prompt": "x"},
                         headers=headers).status_code == 403
