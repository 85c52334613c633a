"""llama.cpp's embedding mode for a loaded model: a second context with ``embeddings=True``.

The context shares the model's weights with the generation context, so a model that is
loaded for chat can embed too without a second copy. Each input is decoded alone, from an
empty cache: llama.cpp picks other matrix kernels for bigger batches, and packing 8 inputs
into one decode moved the starter's vectors by up to 1.2 (of 37; cosine 0.998 to the lone
vector), while one input per decode gives bit-identical vectors whatever else is asked.

Pooling comes from the GGUF (``{arch}.pooling_type``), else from the catalog entry (the
starter is a text generation model; LocalLoom embeds it with mean pooling). A model with
neither, or a reranker (rank pooling), cannot embed: :class:`InvalidRequestError`.

Example::

    embedder = Embedder.create(model, entry=None, n_threads=2, max_ctx=4096)
    vector = embedder.embed(model.tokenize("hello"))   # float32, not yet normalized
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from localloom.engine.runtime import Batch, LlamaModel
from localloom.errors import ContextLengthExceededError, InvalidRequestError, ModelLoadError

if TYPE_CHECKING:
    from localloom.catalog.entry import ModelEntry

__all__ = ["POOLING_NAMES", "Embedder", "pooling_of"]

POOLING_NAMES = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
_NAMES = {v: k for k, v in POOLING_NAMES.items()}
# llama.cpp computes logits for every token in embedding mode (n_vocab floats each): the
# context is sized so those stay under this many bytes (the starter: 512 tokens).
_LOGITS_BUDGET = 1 << 30


def pooling_of(model: LlamaModel, entry: ModelEntry | None) -> tuple[str, str]:
    """(pooling name, where it came from) for ``model``; "none" when it cannot embed."""
    arch = model.meta("general.architecture") or "llama"
    raw = model.meta(f"{arch}.pooling_type")
    if raw is not None and raw.strip().lstrip("-").isdigit():
        return _NAMES.get(int(raw), "none"), "gguf"
    pooling = getattr(entry, "pooling", None) if entry is not None else None
    if pooling:
        return str(pooling), "catalog"
    return "none", "default"


@dataclass(frozen=True)
class EmbedderInfo:
    """What an embedding context can do."""

    pooling: str
    n_embd: int
    n_ctx: int


class Embedder:
    """One embedding context on a loaded model; :meth:`embed` is thread-safe (serialised)."""

    def __init__(self, model: LlamaModel, ctx: Any, info: EmbedderInfo) -> None:
        self.model = model
        self.ptr = ctx
        self.info = info
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.batch = Batch(info.n_ctx)
        self._lock = threading.Lock()
        self._encoder_only = bool(llama_cpp.llama_model_has_encoder(model.ptr)
                                  and not llama_cpp.llama_model_has_decoder(model.ptr))

    @classmethod
    def create(cls, model: LlamaModel, *, entry: ModelEntry | None, model_id: str,
               n_threads: int, max_ctx: int) -> Embedder:
        """Make the context, or raise InvalidRequestError when the model cannot embed."""
        pooling, _ = pooling_of(model, entry)
        if pooling in ("none", "rank"):
            why = ("it is a reranker (rank pooling)" if pooling == "rank" else
                   "its GGUF declares no pooling type (it is a text generation model)")
            raise InvalidRequestError(
                f"Model '{model_id}' cannot make embeddings: {why}. Use an embedding model "
                "(the starter works, with mean pooling), or give this model a 'pooling' "
                "(mean, cls or last) in models.toml.", param="model")
        budget = max(16, _LOGITS_BUDGET // (4 * max(1, model.n_vocab)))
        n_ctx = max(16, min(model.n_ctx_train or max_ctx, max_ctx, budget))
        params = llama_cpp.llama_context_default_params()
        params.embeddings = True
        params.pooling_type = POOLING_NAMES[pooling]
        # One sequence per decode, and the whole input in one ubatch: non-causal models
        # (BERT) need every token of a sequence in the same ubatch.
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
        params.n_seq_max = 1
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not create an embedding context of {n_ctx} tokens for "
                f"'{model_id}' (out of memory?). Lower LOCALLOOM_MAX_DEFAULT_CTX.")
        n_embd = int(llama_cpp.llama_model_n_embd(model.ptr))
        return cls(model, ctx, EmbedderInfo(pooling, n_embd, n_ctx))

    def embed(self, tokens: list[int]) -> np.ndarray:
        """The pooled vector of one input (float32, as llama.cpp gives it)."""
        if not tokens:
            raise InvalidRequestError("An input is empty; give some text or tokens.",
                                      param="input")
        if len(tokens) > self.info.n_ctx:
            raise ContextLengthExceededError(len(tokens), self.info.n_ctx)
        with self._lock:
            if not self.ptr:
                raise InvalidRequestError("The model was unloaded; load it again.",
                                          param="model")
            llama_cpp.llama_memory_clear(self.mem, True)
            batch = self.batch
            batch.clear()
            batch.add_span(tokens, 0, 0, output_last=True)
            batch.logits[:batch.n] = 1  # pooling reads every token's output
            batch.struct.n_tokens = batch.n
            call = llama_cpp.llama_encode if self._encoder_only else llama_cpp.llama_decode
            rc = int(call(self.ptr, batch.struct))
            if rc != 0:
                raise ModelLoadError(f"llama.cpp failed to embed an input of {len(tokens)} "
                                     f"tokens (code {rc}). Try a shorter input.")
            ptr = llama_cpp.llama_get_embeddings_seq(self.ptr, 0)
            if not ptr:
                raise InvalidRequestError("This model gave no pooled embedding; it cannot "
                                          "embed.", param="model")
            view: np.ndarray = np.ctypeslib.as_array(
                ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.info.n_embd,))
            return np.array(view, dtype=np.float32)

    def close(self) -> None:
        """Free the context (idempotent)."""
        with self._lock:
            if self.ptr:
                llama_cpp.llama_free(self.ptr)
                self.ptr = None
