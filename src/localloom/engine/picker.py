"""Choosing each sequence's next token from the last decode's logits, and its logprobs.

Plain greedy sequences skip the C sampler chain: where the context samples on the device
(engine/ondevice.py) their tokens come back from the decode itself; elsewhere one numpy
argmax over all their rows at once (:meth:`Picker.greedy`). The others run their own C
chain (:meth:`Picker.pick`).
Logprobs (numpy over one row) are computed only when a request asks for them.

Example::

    picker = Picker(model, ctx, DeviceGreedy(model, ctx, ctx.device_sampling))
    ctx.decode(); picker.load()
    token = picker.pick(seq, idx)
"""

from __future__ import annotations

import numpy as np

from localloom.engine.events import TokenLogprobData
from localloom.engine.ondevice import DeviceGreedy
from localloom.engine.runtime import Candidates, LlamaContext, LlamaModel, Utf8State
from localloom.engine.task import Seq

__all__ = ["Picker"]


class Picker:
    """The last decode's logits and the ways to pick from them (scheduler thread only)."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext, device: DeviceGreedy) -> None:
        self.model = model
        self.ctx = ctx
        self.device = device
        # The last decode's logits (one view of every output row) and each batch index's row.
        self._table = np.zeros((0, model.n_vocab), dtype=np.float32)
        self._rows = np.zeros(0, dtype=np.int64)
        self._cand: Candidates | None = None  # made at the first request that needs it

    def load(self) -> None:
        """Wait for the decode that just ran; take its logits."""
        self.device.synchronize()
        self._table, self._rows = self.ctx.output_logits(self.model.n_vocab)

    def row(self, idx: int) -> np.ndarray:
        """Logits of batch index ``idx`` from the last decode."""
        row: np.ndarray = self._table[self._rows[idx]]
        return row

    def greedy(self, outs: list[tuple[int, Seq]]) -> list[int]:
        """Tokens of the plain-greedy sequences (one argmax over all their rows); -1 for
        the others."""
        picks = [-1] * len(outs)
        if len(outs) == 1:  # one stream: pick's single-row argmax is cheaper
            return picks
        token = self.device.token
        which = []
        for i, (idx, seq) in enumerate(outs):
            if seq.on_device:
                picks[i] = token(idx)
            elif seq.req.argmax:
                which.append(i)
        if not which:
            return picks
        rows = self._rows[[outs[i][0] for i in which]]
        # Decoding tokens lead the batch, so their rows are usually one slice: a view, no
        # copy of n_vocab floats per sequence.
        contiguous = bool(rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all())
        sub = self._table[rows[0]:rows[-1] + 1] if contiguous else self._table[rows]
        # logit_bias is added in place and undone after the argmax (logprobs read the raw
        # rows): one scatter for all sequences; indices are unique, so the restore is exact.
        ids: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        n_vocab = sub.shape[1]
        for j, i in enumerate(which):
            req = outs[i][1].req
            if req.bias_ids.size:
                ids.append(req.bias_ids + j * n_vocab)
                vals.append(req.bias_vals)
        flat = sub.reshape(-1)  # a view: both the slice and a gathered copy are C-contiguous
        if ids:
            at = np.concatenate(ids)
            saved = flat[at]
            flat[at] += np.concatenate(vals)
        tokens = sub.argmax(axis=1).tolist()
        if ids:
            flat[at] = saved
        for i, token in zip(which, tokens, strict=True):
            picks[i] = token
        return picks

    def pick(self, seq: Seq, idx: int) -> int:
        """``seq``'s next token from batch index ``idx`` (its sampler accepts it)."""
        if seq.on_device:
            return self.device.token(idx)
        req = seq.req
        if not req.argmax:
            if self._cand is None:
                self._cand = Candidates(self.model.n_vocab)
            utf8 = None
            if req.params.grammar is not None:
                utf8 = Utf8State(self.model, seq.out.pending_bytes)
            assert seq.sampler is not None
            token: int = seq.sampler.sample(self.ctx.ptr, idx, lambda: self.row(idx),
                                            self._cand, utf8)
            return token
        logits = self.row(idx)
        if req.bias_ids.size:
            logits = logits.copy()
            logits[req.bias_ids] += req.bias_vals
        return int(logits.argmax())  # the first maximum, as llama.cpp's greedy sampler

    def logprob(self, idx: int, token: int, k: int) -> TokenLogprobData:
        """Log probability of ``token`` at batch index ``idx``, with the ``k`` likeliest."""
        logits = self.row(idx)
        peak = float(logits.max())
        lse = peak + float(np.log(np.exp(logits - peak).sum()))
        top: tuple[tuple[bytes, float], ...] = ()
        if k > 0:
            k = min(k, logits.shape[0])
            ids = np.argpartition(-logits, k - 1)[:k]
            ids = ids[np.argsort(-logits[ids], kind="stable")]
            top = tuple((self.model.piece(int(i), special=True), float(logits[i]) - lse)
                        for i in ids)
        return TokenLogprobData(self.model.piece(token, special=True),
                                float(logits[token]) - lse, top)
