"""``engine.embeddings``: llama.cpp's embedding mode on a tiny real GGUF with mean pooling."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import make_settings

from localloom.engine import AsyncEngine, Engine
from localloom.errors import ContextLengthExceededError, InvalidRequestError
from localloom.testing import write_tiny_gguf

TEXTS = ["the cat sat on the mat", "volcanoes erupt", "x", "hello " * 30, "Ünïcödé ✓",
         "1 2 3 4", "a much longer sentence about the weather in spring", "tea"]


@pytest.fixture(scope="module")
def embed_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, declaring mean pooling in its GGUF (an embedding model)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny-embed.gguf",
                           pooling_type=1)


@pytest.fixture(scope="module")
def engine(embed_gguf: Path, tiny_gguf: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with Engine(make_settings(tmp_path_factory.mktemp("home"))) as eng:
        eng.load(str(tiny_gguf))
        eng.load(str(embed_gguf))
        yield eng


def _vectors(response: object) -> np.ndarray:
    data = response.data  # type: ignore[attr-defined]
    return np.array([d.embedding for d in data], dtype=np.float32)


def test_vectors_are_unit_length_in_openai_shape(engine: Engine, embed_gguf: Path) -> None:
    r = engine.embeddings.create(input=TEXTS[:3], model=str(embed_gguf))
    assert r.object == "list" and r.model == str(embed_gguf)
    assert [d.index for d in r.data] == [0, 1, 2]
    assert all(d.object == "embedding" for d in r.data)
    v = _vectors(r)
    assert v.shape == (3, 64)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(v[0], v[1])  # different texts, different vectors
    assert r.usage.prompt_tokens == r.usage.total_tokens > 3


def test_same_input_gives_identical_vectors_alone_and_in_a_batch_of_8(
        engine: Engine, embed_gguf: Path) -> None:
    batch = _vectors(engine.embeddings.create(input=TEXTS, model=str(embed_gguf)))
    for i, text in enumerate(TEXTS):
        alone = _vectors(engine.embeddings.create(input=text, model=str(embed_gguf)))[0]
        assert np.array_equal(alone, batch[i]), f"input {i} changed inside the batch"
    again = _vectors(engine.embeddings.create(input=TEXTS[::-1], model=str(embed_gguf)))
    assert np.array_equal(again[::-1], batch)


def test_token_arrays_embed_like_their_text(engine: Engine, embed_gguf: Path) -> None:
    runner = engine._runner(str(embed_gguf))
    ids = runner.model.tokenize("the cat sat on the mat", add_special=True,
                                parse_special=False)
    by_text = _vectors(engine.embeddings.create(input="the cat sat on the mat",
                                                model=str(embed_gguf)))
    one = _vectors(engine.embeddings.create(input=ids, model=str(embed_gguf)))
    many = _vectors(engine.embeddings.create(input=[ids, ids[:3]], model=str(embed_gguf)))
    assert np.array_equal(by_text[0], one[0]) and np.array_equal(one[0], many[0])
    with pytest.raises(InvalidRequestError, match="outside the model's vocabulary"):
        engine.embeddings.create(input=[5, 99999], model=str(embed_gguf))


def test_base64_carries_the_same_float32_values(engine: Engine, embed_gguf: Path) -> None:
    plain = engine.embeddings.create(input="tea", model=str(embed_gguf))
    packed = engine.embeddings.create(input="tea", model=str(embed_gguf),
                                      encoding_format="base64")
    raw = packed.data[0].embedding
    assert isinstance(raw, str)
    decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    assert np.array_equal(decoded, np.array(plain.data[0].embedding, dtype=np.float32))


def test_dimensions_of_a_model_that_is_not_matryoshka_is_refused(
        engine: Engine, embed_gguf: Path) -> None:
    with pytest.raises(InvalidRequestError, match="not a Matryoshka model") as info:
        engine.embeddings.create(input="tea", model=str(embed_gguf), dimensions=32)
    assert info.value.param == "dimensions"
    full = engine.embeddings.create(input="tea", model=str(embed_gguf), dimensions=64)
    assert len(full.data[0].embedding) == 64


def test_a_model_without_pooling_cannot_embed(engine: Engine, tiny_gguf: Path) -> None:
    with pytest.raises(InvalidRequestError, match="cannot make embeddings") as info:
        engine.embeddings.create(input="tea", model=str(tiny_gguf))
    assert info.value.param == "model"
    # generation on that model still works afterwards
    r = engine.completions.create(prompt="hi", max_tokens=2, model=str(tiny_gguf))
    assert r.usage is not None and r.usage.completion_tokens >= 1


def test_bad_inputs_get_clear_errors(engine: Engine, embed_gguf: Path) -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        engine.embeddings.create(input="", model=str(embed_gguf))
    with pytest.raises(InvalidRequestError, match="non-empty"):
        engine.embeddings.create(input=[], model=str(embed_gguf))
    with pytest.raises(InvalidRequestError, match="encoding_format"):
        engine.embeddings.create(input="a", model=str(embed_gguf),
                                 encoding_format="hex")  # type: ignore[arg-type]
    with pytest.raises(ContextLengthExceededError):
        engine.embeddings.create(input=[7] * 100_000, model=str(embed_gguf))


def test_encode_truncates_long_texts_when_asked(engine: Engine, embed_gguf: Path) -> None:
    long_text = "word " * 5000
    with pytest.raises(ContextLengthExceededError):
        engine.embeddings.encode([long_text], model=str(embed_gguf))
    matrix = engine.embeddings.encode([long_text, "tea"], model=str(embed_gguf), truncate=True)
    assert matrix.shape == (2, 64) and matrix.dtype == np.float32


def test_async_engine_embeds_the_same(embed_gguf: Path, engine: Engine,
                                      tmp_path: Path) -> None:
    expected = _vectors(engine.embeddings.create(input=TEXTS[:2], model=str(embed_gguf)))

    async def main() -> np.ndarray:
        async with AsyncEngine(make_settings(tmp_path)) as a:
            await a.load(str(embed_gguf))
            return _vectors(await a.embeddings.create(input=TEXTS[:2]))

    assert np.array_equal(asyncio.run(main()), expected)
