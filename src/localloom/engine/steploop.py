"""The step loop: batch, decode, sample, speculate; the scheduler thread's own work.

Each step builds one ``llama_batch`` from the next token of every generating sequence plus
a chunk of waiting prompts (so a long prompt does not stall running streams), calls
``llama_decode`` once, and samples each sequence with its own C sampler chain (or one
argmax for all plain greedy ones). Each sequence's :class:`SeqText` turns its tokens into
deltas, which the :class:`Outbox` delivers while the next decode runs. A finished or
cancelled sequence frees its slot at once; the next admitted request takes it.

The per-token Python work is a handful of C calls, a dict lookup and a string append.

With the model on a GPU, ``llama_decode`` returns once the step is queued and the host
waits only when it reads the results. The loop uses that time (the pipeline): a sampled
token that cannot end its sequence through its text (no stop strings, no logprobs, no
prompt lookup; an end-of-generation token and max_tokens are checked at once) only becomes
the next input at once; its text is decoded and its delta sent while the GPU runs the next
step. Only the picks, the end checks and the batch stay between two decodes.

Example::

    steps = StepLoop(model, ctx, queue)
    for req in queue.admit(steps.free_slots):
        steps.admit(req)
    while steps.busy:
        steps.step()
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from localloom.engine.admission import AdmissionQueue
from localloom.engine.detok import SeqText, TokenTexts
from localloom.engine.events import ChoiceEnd, RequestEnd, RequestFailed
from localloom.engine.lookup import LookupGuard, NgramIndex, PlainRate
from localloom.engine.ondevice import DeviceGreedy
from localloom.engine.outbox import Outbox
from localloom.engine.picker import Picker
from localloom.engine.runtime import LlamaContext, LlamaModel
from localloom.engine.slots import Slots
from localloom.engine.task import GenerationRequest, RequestState, Seq, SeqState
from localloom.engine.threads import ThreadGovernor
from localloom.errors import EngineError

__all__ = ["StepLoop", "StepStats"]


@dataclass
class StepStats:
    """Counters the scheduler thread updates; read from any thread."""

    steps: int = 0
    prompt_tokens_total: int = 0
    generated_tokens_total: int = 0
    last_prefill_tokens_per_s: float = 0.0
    last_decode_tokens_per_s: float = 0.0
    last_ttft_s: float = 0.0
    decode_time_s: float = 0.0
    lookup_drafted: int = 0
    lookup_accepted: int = 0
    threads: int = 0  # compute threads of the last step (fewer while the CPU is busy)

    def request_done(self, req: GenerationRequest) -> None:
        """Count a finished request; its prefill and decode speed become the last ones."""
        now = time.perf_counter()
        self.generated_tokens_total += req.completion_tokens
        if req.t_first > req.t_admit:
            computed = len(req.prompt) - req.cached_tokens
            self.last_prefill_tokens_per_s = computed / (req.t_first - req.t_admit)
            self.last_ttft_s = req.t_first - req.t_submit
        decoded = req.completion_tokens - req.n
        if decoded > 0 and now > req.t_first:
            self.last_decode_tokens_per_s = decoded / (now - req.t_first)


class StepLoop:
    """The running requests of one llama_context, stepped one decode at a time."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext, queue: AdmissionQueue, *,
                 prefix_cache: bool = True, lookup: str = "auto",
                 threads: ThreadGovernor | None = None, pipeline: bool | None = None) -> None:
        self.model = model
        self.ctx = ctx
        self.stats = StepStats()
        self.outbox = Outbox()
        self.plain = PlainRate()  # this machine's plain one-stream step (lookup's yardstick)
        self._queue = queue
        self._threads = threads or ThreadGovernor(ctx.n_threads, enabled=False)
        self._slots = Slots(ctx, reuse=prefix_cache)
        self._device = DeviceGreedy(model, ctx, ctx.device_sampling)
        self._picker = Picker(model, ctx, self._device)
        self._texts = TokenTexts(model)
        # Prompt lookup drops rejected guesses from the cache: recurrent caches cannot.
        self._lookup = "off" if model.recurrent else lookup
        self._prefill: deque[GenerationRequest] = deque()  # prompts still being decoded
        self._decoding: list[Seq] = []  # GENERATING sequences, kept in slot order
        self._unsorted = False
        # Deterministic requests in admission order; the first runs alone in each step.
        self._exclusive: deque[GenerationRequest] = deque()
        # None: pipeline where decode is asynchronous (a GPU); tests force it on a CPU.
        self._pipeline = ctx.offloaded if pipeline is None else pipeline
        self._deferred: list[tuple[Seq, int]] = []  # (sequence, token) whose text waits

    @property
    def busy(self) -> bool:
        """Whether any admitted request is still running here."""
        return bool(self._prefill or self._decoding)

    @property
    def free_slots(self) -> int:
        """Slots no sequence holds."""
        return len(self._slots.free)

    def admit(self, req: GenerationRequest) -> None:
        """Give a request the queue just admitted its slots and sequences (PREFILLING)."""
        slots, req.cached_tokens = self._slots.take(
            req.prompt, req.n, compact=self.busy, reuse=req.reuse_prefix)
        req.t_admit = time.perf_counter()
        req.seqs = [
            Seq(req, i, slot, self._slots.tokens[slot], sampler,
                SeqText(self._texts, req.route, self.outbox.post, index=i, stops=req.stops,
                        lstrip=req.lstrip, logprobs=req.params.logprobs))
            for i, (slot, sampler) in enumerate(zip(slots, req.samplers, strict=True))]
        req.samplers = []  # the sequences own them now
        device = self._device
        on_device = self._on_device(req)
        for seq in req.seqs:
            seq.on_device = on_device and device.attach(seq.slot, req.bias_ids, req.bias_vals)
            if not seq.on_device:
                device.detach(seq.slot)
        self._prefill.append(req)
        if req.deterministic:
            self._exclusive.append(req)

    def _on_device(self, req: GenerationRequest) -> bool:
        """Whether the request's picks can be made in the model's graph: plain greedy, one
        choice, no logprobs, and no prompt lookup forced on (its guesses need several
        output rows of one sequence in a step; the device path gives one)."""
        return (self._device.enabled and req.argmax and req.n == 1 and not req.params.logprobs
                and not (req.lookup and self._lookup == "on"))

    def close(self) -> None:
        """Free the device chains (the scheduler thread's last act, before the context
        is freed)."""
        self._device.close()

    def end(self, req: GenerationRequest, error: BaseException | None) -> None:
        """Cancel a running request: free its slots now; ``error`` (if any) goes to its
        sink. A request that already ended is left alone."""
        if req.state.ended:
            return
        for seq in req.seqs:
            if seq.state.live:
                seq.move(SeqState.CANCELLED)
                self._release(seq)
        self._decoding = [s for s in self._decoding if s.state is SeqState.GENERATING]
        if req in self._prefill:
            self._prefill.remove(req)
        self._retire(req, RequestState.CANCELLED)
        if error is not None:
            self.outbox.post((req.route, RequestFailed(error)))

    def fail_all(self, error: BaseException) -> None:
        """End every running request with ``error``."""
        for req in self._queue.running():
            self.end(req, error)

    # ------------------------------------------------------------------ a step

    def step(self) -> None:
        """One ``llama_decode``: the next token of every generating sequence and prompt
        chunks, or one sequence with its guessed continuation."""
        t_step = time.perf_counter()
        # A deterministic request decodes alone: the others keep their slots and wait.
        focus = self._exclusive[0] if self._exclusive else None
        draft = self._draft() if focus is None and len(self._decoding) == 1 else []
        if draft:
            self._speculate(self._decoding[0], draft, t_step)
            return
        outs = self._batch_tokens(focus)
        ready = self._batch_prompts(focus, bool(outs)) if self._prefill else []
        plain = len(outs) == 1 and self.ctx.batch.n == 1  # one stream, nothing else: its pace
        if not self._decode():
            return
        for idx, req in ready:
            self._prefill.remove(req)
            self._start_choices(req, idx)
        picks = self._picker.greedy(outs)
        generating = SeqState.GENERATING
        for (idx, seq), pick in zip(outs, picks, strict=True):
            if seq.state is generating:
                self._sample(seq, idx, pick)
        self._decoding = [s for s in self._decoding if s.state is generating]
        if plain:
            self.plain.record(time.perf_counter() - t_step)

    def _batch_tokens(self, focus: GenerationRequest | None) -> list[tuple[int, Seq]]:
        """Start the batch with each generating sequence's next token."""
        batch = self.ctx.batch
        batch.clear()
        # Slot order: with one KV stream per sequence, llama.cpp puts only a run of
        # consecutive sequence ids (in batch order) into one ubatch, and every extra ubatch
        # is another pass over all the weights. Unsorted, 32 streams took ~3x as long a step.
        if self._unsorted:
            self._decoding.sort(key=lambda s: s.slot)
            self._unsorted = False
        add = batch.add
        outs: list[tuple[int, Seq]] = []
        for seq in self._decoding:
            if focus is not None and seq.req is not focus:
                continue
            tokens, token = seq.tokens, seq.next_token
            outs.append((add(token, len(tokens), seq.slot, True), seq))
            tokens.append(token)
        return outs

    def _batch_prompts(self, focus: GenerationRequest | None, streaming: bool
                       ) -> list[tuple[int, GenerationRequest]]:
        """Fill the batch with prompt chunks; the requests whose prompt ends in it, with
        the batch index of their last token."""
        batch = self.ctx.batch
        budget = batch.capacity - batch.n
        if streaming:  # smaller prompt chunks while streams run, so they keep flowing
            budget = min(budget, max(64, batch.capacity // 4))
        ready: list[tuple[int, GenerationRequest]] = []
        for req in self._prefill:
            if budget <= 0:
                break
            if focus is not None and req is not focus:
                continue
            first = req.seqs[0]  # the other choices copy its cache when it is done
            start = len(first.tokens)
            k = min(budget, len(req.prompt) - start)
            last = start + k == len(req.prompt)
            chunk = req.prompt[start:start + k]
            idx = batch.add_span(chunk, start, first.slot, last)
            first.tokens.extend(chunk)
            budget -= k
            if last:
                ready.append((idx, req))
        return ready

    def _decode(self) -> bool:
        """Run the batch; False (and every request failed) when llama_decode fails."""
        # The last step's events go out now: the consumers wake while llama_decode runs
        # without the GIL, instead of taking it from this thread between steps.
        if not self._pipeline:
            self.outbox.flush()
        n_tokens = self.ctx.batch.n
        threads = self._threads.choose(n_tokens)
        self.ctx.set_threads(threads)
        t0 = time.perf_counter()
        rc = self.ctx.decode()
        elapsed = time.perf_counter() - t0
        if self._pipeline:  # the GPU runs this step: the last step's text work now
            self._feed_deferred()
            self.outbox.flush()
        self._threads.record(n_tokens, threads, elapsed)
        st = self.stats
        st.decode_time_s += elapsed
        st.steps += 1
        st.threads = threads
        if rc != 0:
            self._fail_decode(rc)
            return False
        self._picker.load()
        return True

    def _feed_deferred(self) -> None:
        """The text of the tokens the last step sampled for the pipeline."""
        items, self._deferred = self._deferred, []
        generating = SeqState.GENERATING
        for seq, token in items:
            if seq.state is generating:  # a cancelled one's text is not wanted
                seq.out.feed(token)  # no stop strings: it cannot end the sequence

    # ------------------------------------------------------------ prompt lookup

    def _draft(self) -> list[int]:
        """Guessed next tokens of the one generating sequence (the caller checks there is
        exactly one) when it decodes alone with prompt lookup; else []."""
        if self._prefill:
            return []
        seq = self._decoding[0]
        guard = seq.guard
        if guard is None or seq.on_device or not guard.ready(seq.n_gen):
            return []
        if guard.adaptive and not self.plain.worth_guessing:
            # auto: first learn this machine's plain step time (once per model); where it
            # is short (small models on a GPU) guessing costs more than it wins
            return []
        assert seq.ngrams is not None
        # Never guess past max_tokens or the context, and keep the batch within its size.
        room = min(guard.draft_len, seq.req.max_tokens - seq.n_gen - 1,
                   self.ctx.n_ctx_seq - len(seq.tokens) - 1, self.ctx.batch.capacity - 1)
        return seq.ngrams.draft(room)

    def _speculate(self, seq: Seq, draft: list[int], t_step: float) -> None:
        """Decode the next token and the guesses in one batch; keep the guesses up to the
        first one the sampler does not pick."""
        batch = self.ctx.batch
        batch.clear()
        tokens = seq.tokens
        first = batch.add(seq.next_token, len(tokens), seq.slot, True)
        for j, token in enumerate(draft):
            batch.add(token, len(tokens) + 1 + j, seq.slot, True)
        tokens.append(seq.next_token)
        if not self._decode():
            return
        accepted = 0
        for j in range(len(draft) + 1):
            self._sample(seq, first + j)  # row j follows the guesses before it
            if (seq.state is not SeqState.GENERATING or j == len(draft)
                    or seq.next_token != draft[j]):
                break
            tokens.append(draft[j])  # the guess was right: its cache entry stays
            accepted += 1
        self.ctx.trim_seq(seq.slot, len(tokens))  # the wrong guesses leave the cache
        self.stats.lookup_drafted += len(draft)
        self.stats.lookup_accepted += accepted
        if seq.state is not SeqState.GENERATING:
            self._decoding = []
        elif seq.guard is not None:
            seq.guard.record(time.perf_counter() - t_step, len(draft), accepted, self.plain,
                             seq.n_gen)

    # --------------------------------------------------------------- sequences

    def _start_choices(self, req: GenerationRequest, idx: int) -> None:
        """The prompt is in the cache: every choice samples its first token."""
        first = req.seqs[0]
        for seq in req.seqs[1:]:
            self._slots.copy(first.slot, seq.slot)
        self.stats.prompt_tokens_total += len(req.prompt)
        # auto decides by timing, which is not repeatable: seeded requests do not guess
        guess = req.lookup and (self._lookup == "on"
                                or (self._lookup == "auto" and not req.seeded))
        for seq in req.seqs:
            seq.move(SeqState.GENERATING)
            if guess:
                seq.ngrams = NgramIndex(req.prompt)
                seq.guard = LookupGuard(adaptive=self._lookup == "auto")
            seq.defer = (self._pipeline and not req.stops and seq.out.lps is None
                         and seq.ngrams is None)
            self._sample(seq, idx)
            if seq.state is SeqState.GENERATING:
                self._decoding.append(seq)
                self._unsorted = True

    def _sample(self, seq: Seq, idx: int, pick: int = -1) -> None:
        """Take ``seq``'s next token (``pick`` when already chosen) and its text."""
        token = pick if pick >= 0 else self._picker.pick(seq, idx)
        req = seq.req
        seq.n_gen += 1
        if req.t_first == 0.0:
            req.t_first = time.perf_counter()
        out = seq.out
        if out.lps is not None:
            out.add_logprob(self._picker.logprob(idx, token, req.params.top_logprobs))
        if self.model.is_eog(token):
            self._end_seq(seq, "stop")
        elif seq.defer and seq.n_gen < req.max_tokens:  # its text after the next launch
            seq.next_token = token
            self._deferred.append((seq, token))
        elif out.feed(token):  # a stop string
            self._end_seq(seq, "stop")
        elif seq.n_gen >= req.max_tokens:
            self._end_seq(seq, "length")
        else:
            seq.next_token = token
            if seq.ngrams is not None:
                seq.ngrams.append(token)

    def _end_seq(self, seq: Seq, reason: str) -> None:
        seq.out.close()
        seq.move(SeqState.FINISHED)
        req = seq.req
        self.outbox.post((req.route, ChoiceEnd(seq.index, reason, seq.n_gen)))
        req.completion_tokens += seq.n_gen
        self._release(seq)
        if all(s.state is SeqState.FINISHED for s in req.seqs):
            self.stats.request_done(req)
            self._retire(req, RequestState.FINISHED)
            self.outbox.post((req.route, RequestEnd(len(req.prompt), req.completion_tokens,
                                                    req.cached_tokens)))

    def _retire(self, req: GenerationRequest, state: RequestState) -> None:
        if req.deterministic and req in self._exclusive:
            self._exclusive.remove(req)
        self._queue.finish(req, state)

    def _release(self, seq: Seq) -> None:
        seq.free_sampler()
        self._slots.release(seq.slot)

    def _fail_decode(self, rc: int) -> None:
        """A failed decode leaves the cache of every sequence in the batch uncertain."""
        what = "no room in the KV cache" if rc == 1 else "internal error"
        self.fail_all(EngineError(f"llama_decode failed with code {rc} ({what}). Retry with "
                                  "a shorter prompt or fewer parallel requests."))
        self._slots.clear_all()
