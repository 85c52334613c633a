"""Continuous batching: one thread per model owns the llama_context and runs every request.

Each step builds one ``llama_batch`` from the next token of every decoding sequence plus a
chunk of waiting prompts (so a long prompt does not stall running streams), calls
``llama_decode`` once, samples each sequence with its own C sampler chain, detokenizes
incrementally (holding back partial UTF-8 and possible stop-string prefixes) and sends
events to the request's sink. A cancelled or finished sequence frees its slot at once; the
next waiting request takes it in the following step.

The per-token Python work is a handful of C calls, a dict lookup and a string append;
logprobs (numpy over the logits row) are computed only when asked for.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from localloom.engine.lookup import LookupGuard, NgramIndex, PlainRate
from localloom.engine.params import SamplingParams
from localloom.engine.runtime import (
    Candidates,
    LlamaContext,
    LlamaModel,
    Utf8State,
    free_sampler,
)
from localloom.engine.slots import Slots
from localloom.engine.threads import ThreadGovernor
from localloom.errors import (
    EngineError,
    GenerationInterrupted,
    ModelNotLoadedError,
    ServerBusyError,
)

__all__ = [
    "ChoiceEnd",
    "Delta",
    "Event",
    "GenerationRequest",
    "RequestEnd",
    "RequestFailed",
    "Scheduler",
    "SchedulerStats",
    "TokenLogprobData",
]


class TokenLogprobData(NamedTuple):
    """Log probability of one sampled token and its most likely alternatives.

    ``text`` is what the token added to the answer, so the texts of a choice's tokens join
    to exactly its content ("" for a token inside a stop string, the end-of-generation token,
    leading whitespace a chat answer drops, the first bytes of a split character)."""

    token: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...]
    text: str = ""


# Events are NamedTuples: one is made per token, and they are the cheapest immutable records.
class Delta(NamedTuple):
    """New text of choice number ``choice``."""

    choice: int
    text: str
    logprobs: tuple[TokenLogprobData, ...] | None = None


class ChoiceEnd(NamedTuple):
    """Choice number ``choice`` finished."""

    choice: int
    finish_reason: str
    completion_tokens: int


class RequestEnd(NamedTuple):
    """Every choice finished; the last event of a successful request."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


class RequestFailed(NamedTuple):
    """The request ended with an error (interrupted, model unloaded, decode failure)."""

    error: BaseException


Event = Delta | ChoiceEnd | RequestEnd | RequestFailed
Sink = Callable[[Event], None]


class GenerationRequest:
    """One request as the scheduler sees it: tokens, samplers (one per choice), a sink."""

    def __init__(self, prompt: list[int], params: SamplingParams, samplers: list[Any],
                 max_tokens: int, stops: tuple[str, ...], sink: Sink, *,
                 lstrip: bool = False, lookup: bool = False,
                 deterministic: bool = False) -> None:
        self.prompt = prompt
        self.params = params
        self.samplers = samplers
        self.n = len(samplers)
        self.max_tokens = max_tokens
        self.stops = stops
        self.sink = sink
        self.lstrip = lstrip
        # Reproducibility: a cached prefix, or guesses verified in a batch, give logits a
        # little different from a cold prefill and one-token steps, and a near tie flips.
        # Seeded requests therefore prefill from an empty slot (the same text every time
        # when they run one at a time); deterministic ones also run alone in their steps
        # (the same text whatever else is in flight) and never guess ahead.
        self.seeded = params.seed is not None
        self.deterministic = deterministic
        self.reuse_prefix = not (self.seeded or deterministic)
        # prompt lookup: one stream only
        self.lookup = lookup and len(samplers) == 1 and not deterministic
        # Plain greedy decoding skips the C chain: it copies all logits into a candidate
        # array per token (0.4 ms with a 262k vocabulary), numpy's argmax reads them (40 us).
        self.argmax = params.greedy and not params.has_penalties and params.grammar is None
        self.bias_ids = np.array([t for t, _ in params.logit_bias], dtype=np.int64)
        self.bias_vals = np.array([b for _, b in params.logit_bias], dtype=np.float32)
        self.slots: list[int] = []
        self.cached_tokens = 0
        self.n_prefilled = 0
        self.n_done = 0
        self.completion_tokens = 0
        self.finished = False
        self.counted = False
        self.t_submit = time.perf_counter()
        self.t_admit = 0.0
        self.t_first = 0.0
        self.scheduler: Scheduler | None = None

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop generating and free the slots at the next step (thread-safe, idempotent)."""
        if self.scheduler is not None:
            self.scheduler.cancel(self, error)


class _Seq:
    """One choice being decoded in one slot (one KV stream)."""

    __slots__ = ("decoder", "done", "guard", "index", "lp_ends", "lps", "n_gen", "n_past",
                 "next_token", "ngrams", "req", "sampler", "sent", "slot", "text")

    def __init__(self, req: GenerationRequest, index: int, n_past: int) -> None:
        self.req = req
        self.index = index
        self.slot = req.slots[index]
        self.sampler = req.samplers[index]
        self.n_past = n_past
        self.next_token = -1
        self.n_gen = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.sent = 0
        self.done = False
        self.lps: list[TokenLogprobData] | None = [] if req.params.logprobs else None
        # Where each pending token's text ends in ``text``; -1: the newest, still growing.
        self.lp_ends: list[int] = []
        self.ngrams: NgramIndex | None = None  # set when prompt lookup may guess ahead
        self.guard: LookupGuard | None = None


@dataclass
class SchedulerStats:
    """Counters the scheduler thread updates; read from any thread."""

    steps: int = 0
    prompt_tokens_total: int = 0
    generated_tokens_total: int = 0
    requests_done: int = 0
    last_prefill_tokens_per_s: float = 0.0
    last_decode_tokens_per_s: float = 0.0
    last_ttft_s: float = 0.0
    running: int = 0
    waiting: int = 0
    decode_time_s: float = 0.0
    lookup_steps: int = 0
    lookup_drafted: int = 0
    lookup_accepted: int = 0
    threads: int = 0  # compute threads of the last step (fewer while the CPU is busy)


def _deliver(items: list[tuple[Sink, Event]]) -> None:
    """On an event loop: hand each event to its stream's queue."""
    for sink, ev in items:
        sink.put(ev)  # type: ignore[attr-defined]


def _hold_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest tail of ``text`` that could start a stop string."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return hold


class Scheduler:
    """Owns one llama_context; ``submit`` from any thread, events arrive on the sinks."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext, *, max_queue: int,
                 name: str = "model", prefix_cache: bool = True, lookup: str = "auto",
                 threads: ThreadGovernor | None = None) -> None:
        self.model = model
        self.ctx = ctx
        self._threads = threads or ThreadGovernor(ctx.n_threads, enabled=False)
        self.n_parallel = ctx.n_parallel
        self.max_queue = max_queue
        self.stats = SchedulerStats()
        self._outbox: list[tuple[Sink, Event]] = []  # events of this step, sent after it
        self._cond = threading.Condition()
        self._waiting: deque[GenerationRequest] = deque()
        self._cancels: list[tuple[GenerationRequest, BaseException | None]] = []
        self._busy_seqs = 0
        self._closing = False
        self._slots = Slots(ctx, reuse=prefix_cache)
        # Prompt lookup drops rejected guesses from the cache: recurrent caches cannot.
        self._lookup = "off" if model.recurrent else lookup
        self._plain = PlainRate()
        self._prefill: deque[GenerationRequest] = deque()
        self._decoding: list[_Seq] = []
        self._unsorted = False  # _decoding is kept in slot order (see _step)
        self._active: set[GenerationRequest] = set()
        # Deterministic requests in admission order; the first runs alone in each step.
        self._exclusive: deque[GenerationRequest] = deque()
        # The last decode's logits (one view of every output row) and each batch index's row.
        self._table = np.zeros((0, model.n_vocab), dtype=np.float32)
        self._rows = np.zeros(0, dtype=np.int64)
        # Text of each token whose bytes are whole UTF-8 (None: it needs the decoder).
        self._texts: dict[int, str | None] = {}
        self._cand: Candidates | None = None  # made at the first grammar request
        self._thread = threading.Thread(target=self._loop, name=f"localloom-{name}",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ any thread

    def submit(self, req: GenerationRequest) -> None:
        """Queue a request; ServerBusyError when the waiting queue is full."""
        with self._cond:
            if self._closing:
                self._release(req)
                raise ModelNotLoadedError("The model was unloaded. Load it again "
                                          "(engine.reload) and retry.")
            waiting = sum(r.n for r in self._waiting)
            if waiting + self._busy_seqs + req.n > self.n_parallel + self.max_queue:
                self._release(req)
                raise ServerBusyError(
                    f"All {self.n_parallel} sequences of this model are busy and its queue "
                    f"is full ({waiting} of {self.max_queue} places taken; "
                    "LOCALLOOM_MAX_QUEUE sets the size). Retry in a moment.", retry_after=1.0)
            req.scheduler = self
            self._waiting.append(req)
            self.stats.waiting = len(self._waiting)
            self._cond.notify()

    def cancel(self, req: GenerationRequest, error: BaseException | None = None) -> None:
        """End ``req`` at the next step; ``error`` (if any) is sent to its sink."""
        with self._cond:
            if req.finished:
                return
            if req in self._waiting:
                self._waiting.remove(req)
                self.stats.waiting = len(self._waiting)
                req.finished = True
                self._release(req)
                if error is not None:
                    req.sink(RequestFailed(error))
                return
            self._cancels.append((req, error))
            self._uncount(req)  # its slots are freed before anything else is admitted
            self._cond.notify()

    def interrupt(self) -> None:
        """Stop every waiting and running request with GenerationInterrupted."""
        with self._cond:
            reqs = list(self._waiting) + list(self._active)
        for req in reqs:
            req.cancel(GenerationInterrupted("The generation was interrupted "
                                             "(engine.interrupt)."))

    def close(self) -> None:
        """Fail outstanding requests and stop the thread (the caller frees the context)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    # ---------------------------------------------------------- scheduler thread

    def _loop(self) -> None:
        try:
            while self._sync():
                if self._active:
                    self._step()  # delivers the previous step's events as it decodes
                if not self._active:
                    self._flush()
        except BaseException as exc:  # keep consumers from waiting forever
            self._fail_all(EngineError(f"The generation loop failed: {exc!r}. Reload the "
                                       "model; report the error if it repeats."))
            raise
        finally:
            self._fail_all(ModelNotLoadedError("The model was unloaded while this request "
                                               "ran. Load it again and retry."))
            self._flush()

    def _send(self, req: GenerationRequest, ev: Event) -> None:
        """Queue an event for ``req``'s sink; :meth:`_flush` delivers it after the step."""
        self._outbox.append((req.sink, ev))

    def _flush(self) -> None:
        """Deliver the step's events: one wake-up per event loop, not one per token.

        A sink with a ``loop`` attribute (an asyncio stream) gets its events through one
        ``call_soon_threadsafe`` shared by every stream of that loop: 32 streams cost one
        self-pipe write and one loop iteration per step instead of 32 of each."""
        if not self._outbox:
            return
        out, self._outbox = self._outbox, []
        loops: dict[Any, list[tuple[Sink, Event]]] = {}
        for sink, ev in out:
            loop = getattr(sink, "loop", None)
            if loop is None:
                sink(ev)
            else:
                loops.setdefault(loop, []).append((sink, ev))
        for loop, items in loops.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # a closed loop: each sink handles it (cancels its request)
                for sink, ev in items:
                    sink(ev)

    def _sync(self) -> bool:
        """Take cancellations and admit waiting requests; blocks while idle."""
        if self._active and not (self._waiting or self._cancels or self._closing):
            return True  # the common step: nothing new, so no lock (reads are atomic)
        with self._cond:
            while not (self._closing or self._cancels or self._active or self._waiting):
                self._cond.wait()
            if self._closing:
                return False
            cancels, self._cancels = self._cancels, []
        for req, error in cancels:
            self._end_request(req, error)
        with self._cond:
            while self._waiting and len(self._slots.free) >= self._waiting[0].n:
                req = self._waiting.popleft()
                req.slots, req.cached_tokens = self._slots.take(
                    req.prompt, req.n, compact=bool(self._active), reuse=req.reuse_prefix)
                req.n_prefilled = req.cached_tokens
                req.t_admit = time.perf_counter()
                self._busy_seqs += req.n
                req.counted = True
                self._active.add(req)
                self._prefill.append(req)
                if req.deterministic:
                    self._exclusive.append(req)
            self.stats.waiting = len(self._waiting)
            self.stats.running = len(self._active)
        return True

    def _step(self) -> None:
        t_step = time.perf_counter()
        # A deterministic request decodes alone: the others keep their slots and wait.
        focus = self._exclusive[0] if self._exclusive else None
        draft = self._draft() if focus is None else []
        if draft:
            self._speculate(self._decoding[0], draft, t_step)
            return
        batch = self.ctx.batch
        batch.clear()
        outs: list[tuple[int, _Seq]] = []
        # Slot order: with one KV stream per sequence, llama.cpp puts only a run of
        # consecutive sequence ids (in batch order) into one ubatch, and every extra ubatch
        # is another pass over all the weights. Unsorted, 32 streams took ~3x as long a step.
        if self._unsorted:
            self._decoding.sort(key=lambda s: s.slot)
            self._unsorted = False
        for seq in self._decoding:
            if focus is not None and seq.req is not focus:
                continue
            outs.append((batch.add(seq.next_token, seq.n_past, seq.slot, True), seq))
            self._slots.tokens[seq.slot].append(seq.next_token)
            seq.n_past += 1
        budget = batch.capacity - batch.n
        if outs:  # smaller prompt chunks while streams run, so they keep flowing
            budget = min(budget, max(64, batch.capacity // 4))
        ready: list[tuple[int, GenerationRequest]] = []
        for req in self._prefill:
            if budget <= 0:
                break
            if focus is not None and req is not focus:
                continue
            start = req.n_prefilled
            k = min(budget, len(req.prompt) - start)
            last = start + k == len(req.prompt)
            chunk = req.prompt[start:start + k]
            idx = batch.add_span(chunk, start, req.slots[0], last)
            self._slots.tokens[req.slots[0]].extend(chunk)
            req.n_prefilled += k
            budget -= k
            if last:
                ready.append((idx, req))
        plain = len(outs) == 1 and batch.n == 1  # one stream, nothing else: its pace
        if not self._decode():
            return
        for idx, req in ready:
            self._prefill.remove(req)
            self._start_choices(req, idx)
        picks = self._greedy_picks(outs)
        for (idx, seq), pick in zip(outs, picks, strict=True):
            if not seq.done:
                self._sample(seq, idx, pick)
        self._decoding = [s for s in self._decoding if not s.done]
        if plain:
            self._plain.record(time.perf_counter() - t_step)

    def _decode(self) -> bool:
        """Run the batch; False (and every request failed) when llama_decode fails."""
        # The last step's events go out now: the consumers wake while llama_decode runs
        # without the GIL, instead of taking it from this thread between steps.
        self._flush()
        n_tokens = self.ctx.batch.n
        threads = self._threads.choose(n_tokens)
        self.ctx.set_threads(threads)
        t0 = time.perf_counter()
        rc = self.ctx.decode()
        elapsed = time.perf_counter() - t0
        self._threads.record(n_tokens, threads, elapsed)
        self.stats.decode_time_s += elapsed
        self.stats.steps += 1
        self.stats.threads = threads
        if rc != 0:
            self._fail_decode(rc)
            return False
        self._table, self._rows = self.ctx.output_logits(self.model.n_vocab)
        return True

    # ------------------------------------------------------------ prompt lookup

    def _draft(self) -> list[int]:
        """Guessed next tokens when one lookup stream decodes alone; else []."""
        if len(self._decoding) != 1 or self._prefill:
            return []
        seq = self._decoding[0]
        guard = seq.guard
        if guard is None or not guard.ready(seq.n_gen):
            return []
        if guard.adaptive and not self._plain.worth_guessing:
            # auto: first learn this machine's plain step time (once per model); where it
            # is short (small models on a GPU) guessing costs more than it wins
            return []
        assert seq.ngrams is not None
        # Never guess past max_tokens or the context, and keep the batch within its size.
        room = min(guard.draft_len, seq.req.max_tokens - seq.n_gen - 1,
                   self.ctx.n_ctx_seq - seq.n_past - 1, self.ctx.batch.capacity - 1)
        return seq.ngrams.draft(room)

    def _speculate(self, seq: _Seq, draft: list[int], t_step: float) -> None:
        """Decode the next token and the guesses in one batch; keep the guesses up to the
        first one the sampler does not pick."""
        batch = self.ctx.batch
        batch.clear()
        first = batch.add(seq.next_token, seq.n_past, seq.slot, True)
        for j, token in enumerate(draft):
            batch.add(token, seq.n_past + 1 + j, seq.slot, True)
        tokens = self._slots.tokens[seq.slot]
        tokens.append(seq.next_token)
        seq.n_past += 1
        if not self._decode():
            return
        accepted = 0
        for j in range(len(draft) + 1):
            self._sample(seq, first + j)  # row j follows the guesses before it
            if seq.done or j == len(draft) or seq.next_token != draft[j]:
                break
            tokens.append(draft[j])  # the guess was right: its cache entry stays
            seq.n_past += 1
            accepted += 1
        self.ctx.trim_seq(seq.slot, seq.n_past)  # the wrong guesses leave the cache
        st = self.stats
        st.lookup_steps += 1
        st.lookup_drafted += len(draft)
        st.lookup_accepted += accepted
        if seq.done:
            self._decoding = []
        elif seq.guard is not None:
            seq.guard.record(time.perf_counter() - t_step, len(draft), accepted, self._plain,
                             seq.n_gen)

    def _start_choices(self, req: GenerationRequest, idx: int) -> None:
        for slot in req.slots[1:]:
            self._slots.copy(req.slots[0], slot)
        self.stats.prompt_tokens_total += len(req.prompt)
        for i in range(req.n):
            seq = _Seq(req, i, len(req.prompt))
            # auto decides by timing, which is not repeatable: seeded requests do not guess
            if req.lookup and (self._lookup == "on"
                               or (self._lookup == "auto" and not req.seeded)):
                seq.ngrams = NgramIndex(req.prompt)
                seq.guard = LookupGuard(adaptive=self._lookup == "auto")
            self._sample(seq, idx)
            if not seq.done:
                self._decoding.append(seq)
                self._unsorted = True

    def _greedy_picks(self, outs: list[tuple[int, _Seq]]) -> list[int]:
        """Tokens of the plain-greedy sequences (one argmax over all their rows); -1 for
        the others."""
        picks = [-1] * len(outs)
        if len(outs) == 1:  # one stream: _pick's single-row argmax is cheaper
            return picks
        which = [i for i, (_, seq) in enumerate(outs) if seq.req.argmax]
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

    def _row(self, idx: int) -> np.ndarray:
        """Logits of batch index ``idx`` from the last decode."""
        row: np.ndarray = self._table[self._rows[idx]]
        return row

    def _pick(self, seq: _Seq, idx: int, pick: int) -> int:
        if pick >= 0:
            return pick
        req = seq.req
        if not req.argmax:
            if self._cand is None:
                self._cand = Candidates(self.model.n_vocab)
            utf8 = None
            if req.params.grammar is not None:
                utf8 = Utf8State(self.model, seq.decoder.getstate()[0])
            token: int = seq.sampler.sample(self.ctx.ptr, idx, lambda: self._row(idx),
                                            self._cand, utf8)
            return token
        logits = self._row(idx)
        if req.bias_ids.size:
            logits = logits.copy()
            logits[req.bias_ids] += req.bias_vals
        return int(logits.argmax())  # the first maximum, as llama.cpp's greedy sampler

    def _sample(self, seq: _Seq, idx: int, pick: int = -1) -> None:
        token = self._pick(seq, idx, pick)
        req = seq.req
        seq.n_gen += 1
        if req.t_first == 0.0:
            req.t_first = time.perf_counter()
        if seq.lps is not None:
            if seq.lp_ends and seq.lp_ends[-1] < 0:
                seq.lp_ends[-1] = len(seq.text)
            seq.lps.append(self._logprob(idx, token, req.params.top_logprobs))
            seq.lp_ends.append(-1)
        if self.model.is_eog(token):
            self._end_seq(seq, "stop")
            return
        text = self._text(seq, token)
        if text:
            self._add_text(seq, text)
        if seq.done:
            return
        if seq.n_gen >= req.max_tokens:
            self._end_seq(seq, "length")
        else:
            seq.next_token = token
            if seq.ngrams is not None:
                seq.ngrams.append(token)

    def _text(self, seq: _Seq, token: int) -> str:
        """New text of ``token``: its cached string when no partial character is pending."""
        text = self._texts.get(token, "")
        if text == "" and token not in self._texts:
            try:
                text = self._texts[token] = self.model.piece(token).decode("utf-8")
            except UnicodeDecodeError:
                text = self._texts[token] = None
        if text is not None and not seq.decoder.buffer:
            return text
        return str(seq.decoder.decode(self.model.piece(token)))

    def _add_text(self, seq: _Seq, text: str) -> None:
        if seq.req.lstrip and not seq.text:
            text = text.lstrip()
            if not text:
                return
        seq.text += text
        stops = seq.req.stops
        if not stops:
            self._emit(seq, len(seq.text))
            return
        cut = -1
        for stop in stops:
            p = seq.text.find(stop, seq.sent)
            if p != -1 and (cut == -1 or p < cut):
                cut = p
        if cut != -1:
            seq.text = seq.text[:cut]
            seq.decoder.reset()  # bytes after the stop string are not output
            self._end_seq(seq, "stop")
            return
        self._emit(seq, len(seq.text) - _hold_back(seq.text, stops))

    def _emit(self, seq: _Seq, upto: int, force: bool = False) -> None:
        lps = None
        if seq.lps is not None:
            upto, lps = self._token_texts(seq, len(seq.text) if force else upto)
            if upto <= seq.sent and not lps:
                return
        elif upto <= seq.sent:
            return
        piece = seq.text[seq.sent:upto]
        seq.sent = max(seq.sent, upto)
        self._send(seq.req, Delta(seq.index, piece, lps))

    @staticmethod
    def _token_texts(seq: _Seq, upto: int) -> tuple[int, tuple[TokenLogprobData, ...]]:
        """The pending tokens whose text ends by ``upto``, each with its text; the text is
        sent up to the last of them, so a delta's tokens join to exactly its text."""
        assert seq.lps is not None
        size = len(seq.text)  # a stop string may have cut the text short of recorded ends
        # The newest token waits while the decoder holds its trailing bytes: at the end they
        # become its text ("\ufffd").
        newest = size + 1 if seq.decoder.buffer else size
        ends = [newest if end < 0 else min(end, size) for end in seq.lp_ends]
        count = 0
        while count < len(ends) and ends[count] <= upto:
            count += 1
        if count < len(ends):
            upto = ends[count - 1] if count else seq.sent
        start, out = seq.sent, []
        for data, end in zip(seq.lps[:count], ends[:count], strict=True):
            out.append(data._replace(text=seq.text[start:end]))
            start = end
        del seq.lps[:count], seq.lp_ends[:count]
        return upto, tuple(out)

    def _end_seq(self, seq: _Seq, reason: str) -> None:
        seq.text += seq.decoder.decode(b"", final=True)
        seq.done = True
        self._emit(seq, len(seq.text), force=True)
        req = seq.req
        self._send(req, ChoiceEnd(seq.index, reason, seq.n_gen))
        req.completion_tokens += seq.n_gen
        self._free_slot(seq.slot, seq.sampler)
        seq.sampler = None
        req.n_done += 1
        if req.n_done == req.n:
            self._finish_ok(req)

    def _finish_ok(self, req: GenerationRequest) -> None:
        now = time.perf_counter()
        st = self.stats
        st.requests_done += 1
        st.generated_tokens_total += req.completion_tokens
        if req.t_first > req.t_admit:
            computed = len(req.prompt) - req.cached_tokens
            st.last_prefill_tokens_per_s = computed / (req.t_first - req.t_admit)
            st.last_ttft_s = req.t_first - req.t_submit
        decoded = req.completion_tokens - req.n
        if decoded > 0 and now > req.t_first:
            st.last_decode_tokens_per_s = decoded / (now - req.t_first)
        self._retire(req)
        self._send(req, RequestEnd(len(req.prompt), req.completion_tokens, req.cached_tokens))

    def _end_request(self, req: GenerationRequest, error: BaseException | None) -> None:
        """Cancel: free every slot of ``req`` now."""
        if req.finished or req not in self._active:
            return
        for seq in self._decoding:
            if seq.req is req and not seq.done:
                seq.done = True
                self._free_slot(seq.slot, seq.sampler)
                seq.sampler = None
        self._decoding = [s for s in self._decoding if not s.done]
        if req in self._prefill:
            self._prefill.remove(req)
            for slot, sampler in zip(req.slots, req.samplers, strict=True):
                self._free_slot(slot, sampler)
        self._retire(req)
        if error is not None:
            self._send(req, RequestFailed(error))

    def _retire(self, req: GenerationRequest) -> None:
        req.finished = True
        req.samplers = []
        if req.deterministic and req in self._exclusive:
            self._exclusive.remove(req)
        with self._cond:
            self._active.discard(req)
            self._uncount(req)
            self.stats.running = len(self._active)

    def _uncount(self, req: GenerationRequest) -> None:
        """Give back ``req``'s share of the queue capacity (once; caller holds the lock)."""
        if req.counted:
            req.counted = False
            self._busy_seqs -= req.n

    def _free_slot(self, slot: int, sampler: Any) -> None:
        free_sampler(sampler)
        self._slots.release(slot)

    def _release(self, req: GenerationRequest) -> None:
        for sampler in req.samplers:
            free_sampler(sampler)
        req.samplers = []

    def _logprob(self, idx: int, token: int, k: int) -> TokenLogprobData:
        logits = self._row(idx)
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

    def _fail_decode(self, rc: int) -> None:
        """A failed decode leaves the cache of every sequence in the batch uncertain."""
        what = "no room in the KV cache" if rc == 1 else "internal error"
        error = EngineError(f"llama_decode failed with code {rc} ({what}). Retry with a "
                            "shorter prompt or fewer parallel requests.")
        for req in list(self._active):
            self._end_request(req, error)
        self._slots.clear_all()

    def _fail_all(self, error: BaseException) -> None:
        for req in list(self._active):
            self._end_request(req, error)
        with self._cond:
            self._closing = True
            waiting, self._waiting = list(self._waiting), deque()
            self.stats.waiting = 0
        for req in waiting:
            req.finished = True
            self._release(req)
            req.sink(RequestFailed(error))
