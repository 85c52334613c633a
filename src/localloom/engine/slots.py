"""Sequence slots and prefix reuse.

Each slot is one sequence of the llama_context (its own KV stream). A finished or cancelled
request frees its slot at once but leaves the slot's cache in place, remembering which
tokens it holds. The next request takes the free slot whose cache shares the longest prefix
with its prompt (the same task prompt and document, a chat's earlier turns), drops the rest
of that cache, and prefills only what is new. Only the scheduler thread uses this.
"""

from __future__ import annotations

import numpy as np

from localloom.engine.runtime import LlamaContext

__all__ = ["Slots", "common_prefix"]


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n


class Slots:
    """Free slots, and the tokens each slot's KV cache holds.

    Each slot's token list is changed in place, never replaced: a sequence keeps a reference
    to its slot's list and appends what it decodes."""

    def __init__(self, ctx: LlamaContext, reuse: bool = True) -> None:
        self.ctx = ctx
        self.reuse = reuse
        self.free = list(range(ctx.n_parallel))
        self.tokens: list[list[int]] = [[] for _ in range(ctx.n_parallel)]
        self._last_use = [0] * ctx.n_parallel
        self._clock = 0

    def take(self, prompt: list[int], n: int, *, compact: bool = False,
             reuse: bool = True) -> tuple[list[int], int]:
        """``n`` free slots for a prompt; returns them and how many prompt tokens the first
        one already holds (to be skipped by prefill). The others start empty; so does the
        first when ``reuse`` is False (a request that must compute exactly what a cold
        prefill does).

        ``compact`` (other sequences are running): a prompt that shares nothing with any
        cache takes the lowest free slot rather than the least recently used one. llama.cpp
        decodes a run of consecutive slots in one pass, so gaps between busy slots cost a
        pass each; idle, the least recently used cache goes, keeping recent ones for reuse.
        """
        shared = {s: self._shared(s, prompt) if reuse else 0 for s in self.free}
        first = max(self.free, key=lambda s: (shared[s], -self._last_use[s]))
        if compact and shared[first] <= 1:  # a shared BOS saves nothing
            first = min(self.free)
        self.free.remove(first)
        kept = self._keep_prefix(first, min(shared[first], len(prompt) - 1))
        if compact:
            self.free.sort(reverse=True)  # pop() gives the lowest ids
        else:
            self.free.sort(key=lambda s: self._last_use[s], reverse=True)
        others = [self.free.pop() for _ in range(n - 1)]  # least recently used caches go
        for slot in others:
            self.clear(slot)
        return [first, *others], kept

    def _shared(self, slot: int, prompt: list[int]) -> int:
        return common_prefix(self.tokens[slot], prompt) if self.reuse else 0

    def _keep_prefix(self, slot: int, keep: int) -> int:
        # ``keep`` < the prompt's length: at least one prompt token is decoded again, as
        # its logits start the answer.
        if keep > 0 and self.ctx.trim_seq(slot, keep):
            del self.tokens[slot][keep:]
            return keep
        self.clear(slot)  # nothing shared, or this cache cannot drop a tail (recurrent)
        return 0

    def release(self, slot: int) -> None:
        """The slot is free again; its cache stays for a later prefix match."""
        self._clock += 1
        self._last_use[slot] = self._clock
        self.free.append(slot)

    def copy(self, src: int, dst: int) -> None:
        """Give ``dst`` (empty) the whole cache of ``src``."""
        self.ctx.copy_seq(src, dst)
        self.tokens[dst][:] = self.tokens[src]

    def clear(self, slot: int) -> None:
        """Empty one slot's cache."""
        self.ctx.clear_seq(slot)
        self.tokens[slot].clear()

    def clear_all(self) -> None:
        """Empty every cache (after a failed decode left them uncertain)."""
        for slot in range(len(self.tokens)):
            self.clear(slot)
