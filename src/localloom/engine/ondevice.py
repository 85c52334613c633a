"""Greedy picks made where the model runs (llama.cpp's backend sampling).

With every layer on a GPU, copying each step's logits rows to the host (n_vocab floats per
sequence) and taking their argmax there cost the step loop more than the rest of its
per-token work. llama.cpp can instead put a sampler chain into the model's own graph: the
GPU adds the request's logit bias and takes the argmax, and only one token id per row comes
back. A step whose output rows all belong to such sequences copies no logits at all.

Only plain greedy single-choice requests without logprobs go there (they need nothing but
the argmax); every other request keeps the host path (:class:`~localloom.engine.picker.Picker`),
and its slot's chain is detached first. A slot keeps its chain while later requests ask for
the same logit bias: attaching a chain makes llama.cpp re-plan its graph once.

Measured on an H200 (2026-12-02, TinyLlama shape, 32 streams of 128 tokens) it is slower
than the host path: 6,625 against 7,613 tok/s, as llama.cpp adds a logit-bias scatter and
an argmax per sequence to every step's graph (four small kernels each), which cost more
than the copy of the rows they save. It is therefore off unless
``LOCALLOOM_DEVICE_SAMPLING=1`` asks for it; one vectorised pick over all rows would be the
way to win here.

Example::

    dev = DeviceGreedy(model, ctx)
    on = dev.attach(slot, bias_ids, bias_vals)   # False: sample on the host
    ctx.decode(); dev.synchronize()
    token = dev.token(idx)
"""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np

from localloom.engine.runtime import LlamaContext, LlamaModel

__all__ = ["DeviceGreedy"]


class DeviceGreedy:
    """The greedy chains attached to a context's slots (scheduler thread only)."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext, enabled: bool) -> None:
        self.model = model
        self.ctx = ctx
        self.enabled = enabled
        self._chains: dict[int, tuple[Any, bytes]] = {}  # slot: (chain, bias key)
        # Detached chains may still be referenced by the decode in flight: freed after the
        # next synchronize.
        self._retired: list[Any] = []

    def attach(self, slot: int, bias_ids: np.ndarray, bias_vals: np.ndarray) -> bool:
        """Give ``slot`` a greedy chain with this logit bias; False (and no chain) when this
        context does not sample on the device or llama.cpp cannot offload the chain."""
        if not self.enabled:
            return False
        if bias_ids.size and (bias_vals == -np.inf).any():
            return False  # -inf bans stay on the host (the device path adds the bias in f32)
        key = bias_ids.astype(np.int64).tobytes() + bias_vals.astype(np.float32).tobytes()
        held = self._chains.get(slot)
        if held is not None and held[1] == key:
            return True
        chain = self._chain(bias_ids, bias_vals)
        if not llama_cpp.llama_set_sampler(self.ctx.ptr, slot, chain):
            llama_cpp.llama_sampler_free(chain)
            self.detach(slot)
            self.enabled = False  # this backend cannot: stop asking for every request
            return False
        if held is not None:
            self._retired.append(held[0])
        self._chains[slot] = (chain, key)
        return True

    def detach(self, slot: int) -> None:
        """Sample ``slot`` on the host again."""
        held = self._chains.pop(slot, None)
        if held is not None:
            llama_cpp.llama_set_sampler(self.ctx.ptr, slot, None)
            self._retired.append(held[0])

    def _chain(self, bias_ids: np.ndarray, bias_vals: np.ndarray) -> Any:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if bias_ids.size:
            arr = (llama_cpp.llama_logit_bias * int(bias_ids.size))()
            for i, (tok, val) in enumerate(zip(bias_ids.tolist(), bias_vals.tolist(),
                                               strict=True)):
                arr[i] = llama_cpp.llama_logit_bias(int(tok), float(val))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_logit_bias(
                self.model.n_vocab, int(bias_ids.size), arr))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain

    def synchronize(self) -> None:
        """Wait for the decode in flight; chains detached before it are freed now."""
        llama_cpp.llama_synchronize(self.ctx.ptr)
        for chain in self._retired:
            llama_cpp.llama_sampler_free(chain)
        self._retired = []

    def token(self, idx: int) -> int:
        """The token the device picked for batch index ``idx``."""
        token = int(llama_cpp.llama_get_sampled_token_ith(self.ctx.ptr, idx))
        if token < 0:
            raise RuntimeError(f"llama.cpp sampled no token for batch index {idx}")
        return token

    def close(self) -> None:
        """Detach and free every chain (before the context is freed)."""
        for slot in list(self._chains):
            self.detach(slot)
        for chain in self._retired:
            llama_cpp.llama_sampler_free(chain)
        self._retired = []
