"""``POST /v1/embeddings`` and ``/api/history?mode=`` on a real `localloom serve`."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
from server_harness import LiveServer, start_server

from localloom.testing import write_tiny_gguf

EMBED = "tiny-embed"
TEXTS = ["the cat sat on the mat", "volcanoes erupt", "x", "hello " * 30, "Ünïcödé ✓",
         "1 2 3 4", "a much longer sentence about the weather in spring", "tea"]


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The tiny chat model as "tiny", and a tiny mean-pooling model as the embedding model."""
    embed = write_tiny_gguf(tmp_path_factory.mktemp("models") / "embed.gguf", pooling_type=1)
    # The same file as a Matryoshka model, with pooling from its catalog entry.
    nested = write_tiny_gguf(tmp_path_factory.mktemp("models") / "nested.gguf")
    toml = ('[[model]]\nid = "nested"\ndisplay_name = "Nested"\ndownload_size = 500000\n'
            'ram_min_gb = 0.1\nram_max_gb = 0.2\ncontext_length = 2048\npooling = "mean"\n'
            f'matryoshka_dimensions = [16, 32, 64]\n[model.source]\nkind = "local"\n'
            f'path = {str(nested)!r}\n')
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf,
                        extra_models={EMBED: embed}, extra_toml=toml,
                        env={"LOCALLOOM_EMBEDDING_MODEL": EMBED})
    yield live
    live.stop()


def _floats(server: LiveServer, inputs: object, **extra: object) -> np.ndarray:
    with server.http() as http:
        r = http.post("/v1/embeddings", json={"model": EMBED, "input": inputs,
                                              "encoding_format": "float", **extra})
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


def test_openai_sdk_parses_embeddings_base64_by_default(server: LiveServer) -> None:
    client = server.client()
    r = client.embeddings.create(model=EMBED, input=["the cat sat on the mat", "tea"])
    assert r.model == EMBED and r.object == "list"
    assert [d.index for d in r.data] == [0, 1]
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    assert got.shape == (2, 64)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(got, _floats(server, ["the cat sat on the mat", "tea"]))
    assert r.usage.prompt_tokens == r.usage.total_tokens > 2
    with server.http() as http:  # what the SDK asked for: base64 of little-endian float32
        raw = http.post("/v1/embeddings", json={"model": EMBED, "input": "tea",
                                                "encoding_format": "base64"}).json()
    packed = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(packed, got[1])


def test_same_input_alone_and_in_a_batch_of_8_is_identical(server: LiveServer) -> None:
    batch = _floats(server, TEXTS)
    for i, text in enumerate(TEXTS):
        assert np.array_equal(_floats(server, text)[0], batch[i]), TEXTS[i]
    assert np.array_equal(_floats(server, TEXTS), batch)  # and across calls


def test_matryoshka_model_shortens_to_dimensions_and_normalizes_again(
        server: LiveServer) -> None:
    client = server.client()
    full = np.array(client.embeddings.create(model="nested", input="tea").data[0].embedding)
    short = np.array(client.embeddings.create(model="nested", input="tea",
                                              dimensions=16).data[0].embedding)
    assert full.shape == (64,) and short.shape == (16,)
    assert abs(float(np.linalg.norm(short)) - 1.0) < 1e-5
    assert np.allclose(short, full[:16] / np.linalg.norm(full[:16]), atol=1e-6)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="nested", input="tea", dimensions=8)
    assert "between 16 and 64" in str(caught.value)


def test_token_arrays_are_embedded(server: LiveServer) -> None:
    one = _floats(server, [1, 70, 71, 72])
    many = _floats(server, [[1, 70, 71, 72], [1, 80]])
    assert one.shape == (1, 64) and np.array_equal(one[0], many[0])


def test_bad_embedding_requests_are_clear_400s(server: LiveServer) -> None:
    client = server.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBED, input="tea", dimensions=16)
    assert "not a Matryoshka model" in str(caught.value)
    assert caught.value.body["param"] == "dimensions"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="tiny", input="tea")
    assert "cannot make embeddings" in str(caught.value)
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    with server.http() as http:
        r = http.post("/v1/embeddings", json={"model": EMBED, "input": []})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
        r = http.post("/v1/embeddings", json={"model": EMBED, "input": "a", "bogus": 1})
        assert r.status_code == 400 and "bogus" in r.json()["error"]["message"]
        r = http.post("/v1/embeddings", json={"input": "tea", "encoding_format": "float"})
        assert r.status_code == 200 and r.json()["model"] == EMBED  # the embedding model
        r = http.get("/v1/embeddings")
        assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_history_search_by_meaning_after_background_embedding(server: LiveServer) -> None:
    with server.http() as http:
        before = http.post("/api/history", json={
            "task": "summarize", "model": "tiny", "original": "The volcano erupted.",
            "result": "A volcano erupted overnight."})
        assert before.status_code == 201
        topics = ["Interest rates went up.", "The team won the final.", "Bake the loaf."]
        for text in topics:
            assert http.post("/api/history", json={"task": "summarize", "model": "tiny",
                                                   "original": text, "result": text}
                             ).status_code == 201
        deadline = time.monotonic() + 60
        while True:  # embedded in the background, shortly after each save
            page = http.get("/api/history", params={"q": "volcano"}).json()
            if page["mode"] == "hybrid" and page["total"] == 4:
                break
            assert time.monotonic() < deadline, page
            time.sleep(0.3)
        assert page["results"][0]["result"] == "A volcano erupted overnight."
        fts = http.get("/api/history", params={"q": "volcano", "mode": "fts"}).json()
        assert fts["mode"] == "fts" and fts["total"] == 1
        meaning = http.get("/api/history", params={"q": "bread", "mode": "semantic",
                                                   "limit": 2}).json()
        assert meaning["mode"] == "semantic" and meaning["total"] == 4
        assert len(meaning["results"]) == 2
        scores = [r["score"] for r in meaning["results"]]
        assert scores == sorted(scores, reverse=True)
        bad = http.get("/api/history", params={"q": "x", "mode": "vectors"})
        assert bad.status_code == 400 and "semantic, fts or hybrid" in bad.text
        listed = http.get("/api/history").json()
        assert listed["mode"] is None and listed["total"] == 4
