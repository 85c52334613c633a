"""``engine.embeddings``: OpenAI's Embeddings API on llama.cpp's embedding mode.

Example::

    from localloom import Engine
    with Engine() as engine:
        engine.reload("starter")
        r = engine.embeddings.create(input=["a cat", "a dog"])
        print(len(r.data[0].embedding))                  # unit-length float vectors
        matrix = engine.embeddings.encode(["a cat"])      # numpy (n, dim), normalized

Vectors are L2-normalized, as OpenAI's are, so a dot product is the cosine similarity.
``dimensions`` shortens them (then normalizes again) only for Matryoshka models, whose
catalog entry lists ``matryoshka_dimensions``; any other value is a 400.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from localloom._validation import invalid_request
from localloom.errors import InvalidRequestError

if TYPE_CHECKING:
    from localloom.engine.engine import AsyncEngine, Engine
    from localloom.engine.runner import ModelRunner

__all__ = [
    "AsyncEmbeddings",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingUsage",
    "Embeddings",
]

EmbeddingInput = str | list[str] | list[int] | list[list[int]]
_MAX_INPUTS = 2048  # OpenAI's limit on inputs per request
_EXPLAIN = {"input": "'input' must be a non-empty string, a list of strings, a list of token "
                     "ids, or a list of such lists."}


class EmbeddingRequest(BaseModel):
    """The body of ``POST /v1/embeddings`` (and the keyword arguments of ``create``)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None  # accepted and ignored, as OpenAI's end-user id

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: EmbeddingInput) -> EmbeddingInput:
        if isinstance(value, list) and not value:
            raise ValueError("'input' is an empty list; give at least one text")
        if isinstance(value, list) and len(value) > _MAX_INPUTS and not isinstance(value[0], int):
            raise ValueError(f"'input' has {len(value)} items; at most {_MAX_INPUTS}")
        return value

    @classmethod
    def parse(cls, data: dict[str, Any]) -> EmbeddingRequest:
        """Validate, turning pydantic's errors into one :class:`InvalidRequestError`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_request(exc.errors(), model=cls, explain=_EXPLAIN) from exc

    def items(self) -> list[str | list[int]]:
        """The inputs as a list: texts or token id lists."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and all(isinstance(v, int) for v in value):
            return [list(value)]  # type: ignore[arg-type]  # one token array
        return list(value)  # type: ignore[arg-type]


class Embedding(BaseModel):
    """One vector: a list of floats, or base64 of little-endian float32."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Tokens read (embeddings produce none)."""

    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    """OpenAI's embeddings response."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def _tokens(runner: ModelRunner, item: str | list[int], n_ctx: int, truncate: bool
            ) -> list[int]:
    if isinstance(item, str):
        if not item:
            raise InvalidRequestError("An input string is empty; give some text.",
                                      param="input")
        tokens = runner.model.tokenize(item, add_special=True, parse_special=False)
    else:
        n_vocab = runner.model.n_vocab
        bad = [t for t in item if not 0 <= t < n_vocab]
        if bad:
            raise InvalidRequestError(
                f"Token id {bad[0]} is outside the model's vocabulary (ids 0..{n_vocab - 1}).",
                param="input")
        tokens = list(item)
    return tokens[:n_ctx] if truncate else tokens


def _check_dimensions(dimensions: int | None, full: int, runner: ModelRunner) -> None:
    """Refuse a ``dimensions`` the model cannot give (before any work is done)."""
    if dimensions is None or dimensions == full:
        return
    allowed = tuple(getattr(runner.entry, "matryoshka_dimensions", ()) or ())
    if not allowed:
        raise InvalidRequestError(
            f"Model '{runner.id}' makes {full}-dimensional embeddings and cannot shorten them "
            "(it is not a Matryoshka model). Leave 'dimensions' out, or pick a model whose "
            "catalog entry lists matryoshka_dimensions.", param="dimensions")
    if not min(allowed) <= dimensions <= full:
        raise InvalidRequestError(
            f"'dimensions' must be between {min(allowed)} and {full} for model "
            f"'{runner.id}' (trained sizes: {', '.join(map(str, allowed))}).",
            param="dimensions")


def _shorten(matrix: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka: keep the first ``dimensions`` and normalize again."""
    if dimensions is None or dimensions == matrix.shape[1]:
        return matrix
    return _normalize(matrix[:, :dimensions])


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def embed_items(runner: ModelRunner, items: Sequence[str | list[int]], *,
                truncate: bool = False) -> tuple[np.ndarray, int]:
    """(normalized float32 matrix, prompt tokens) for ``items`` on one loaded model."""
    embedder = runner.embedder()
    n_ctx = embedder.info.n_ctx
    token_lists = [_tokens(runner, item, n_ctx, truncate) for item in items]
    rows = [embedder.embed(tokens) for tokens in token_lists]
    matrix = np.stack(rows) if rows else np.zeros((0, embedder.info.n_embd), np.float32)
    return _normalize(matrix), sum(len(t) for t in token_lists)


def _encode(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


class Embeddings:
    """``engine.embeddings``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, *, input: EmbeddingInput, model: str | None = None,
               encoding_format: Literal["float", "base64"] = "float",
               dimensions: int | None = None, user: str | None = None
               ) -> CreateEmbeddingResponse:
        """Embed one input or many (texts or token id lists), OpenAI-style."""
        req = EmbeddingRequest.parse({"input": input, "model": model, "user": user,
                                      "encoding_format": encoding_format,
                                      "dimensions": dimensions})
        return self.create_from(req)

    def create_from(self, req: EmbeddingRequest) -> CreateEmbeddingResponse:
        """:meth:`create` for an already validated request (the server's path)."""
        with self._engine._runner(req.model).using() as runner:
            _check_dimensions(req.dimensions, runner.embedder().info.n_embd, runner)
            matrix, used = embed_items(runner, req.items())
            matrix = _shorten(matrix, req.dimensions)
        data = [Embedding(index=i, embedding=_encode(v, req.encoding_format))
                for i, v in enumerate(matrix)]
        return CreateEmbeddingResponse(data=data, model=runner.id,
                                       usage=EmbeddingUsage(prompt_tokens=used,
                                                            total_tokens=used))

    def encode(self, texts: Sequence[str], *, model: str | None = None,
               truncate: bool = False) -> np.ndarray:
        """Unit-length float32 vectors of ``texts`` as an (n, dim) matrix; ``truncate``
        embeds only the first tokens of texts longer than the embedding context."""
        with self._engine._runner(model).using() as runner:
            return embed_items(runner, list(texts), truncate=truncate)[0]

    def pooling(self, model: str | None = None) -> str:
        """The pooling ``model`` embeds with ("none": it cannot embed)."""
        from localloom.engine.embedder import pooling_of

        runner = self._engine._runner(model)
        return pooling_of(runner.model, runner.entry)[0]


class AsyncEmbeddings:
    """``async_engine.embeddings``: the same calls, in a worker thread."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, *, input: EmbeddingInput, model: str | None = None,
                     encoding_format: Literal["float", "base64"] = "float",
                     dimensions: int | None = None, user: str | None = None
                     ) -> CreateEmbeddingResponse:
        """See :meth:`Embeddings.create`."""
        return await asyncio.to_thread(
            self._engine.engine.embeddings.create, input=input, model=model,
            encoding_format=encoding_format, dimensions=dimensions, user=user)

    async def create_from(self, req: EmbeddingRequest) -> CreateEmbeddingResponse:
        """See :meth:`Embeddings.create_from`."""
        return await asyncio.to_thread(self._engine.engine.embeddings.create_from, req)

    async def encode(self, texts: Sequence[str], *, model: str | None = None,
                     truncate: bool = False) -> np.ndarray:
        """See :meth:`Embeddings.encode`."""
        return await asyncio.to_thread(self._engine.engine.embeddings.encode, texts,
                                       model=model, truncate=truncate)

