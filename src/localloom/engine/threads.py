"""Compute threads chosen step by step, so a busy CPU does not stall generation.

llama.cpp splits every operation of a step across its threads and waits for all of them at
a barrier (OpenMP's spinning barrier in the CPU build). When another process keeps a core
busy, the thread sharing that core runs at half speed or less and every other thread waits
for it: measured on the 2-core box, the starter decoded 100 tok/s on 2 threads when quiet,
45-48 with one busy process and 15 with three, while 1 thread kept 85-89 and 41.
A passive wait policy (OMP_WAIT_POLICY=PASSIVE) halved the quiet speed instead.

So the scheduler asks a :class:`ThreadGovernor` for each step's thread count. It keeps the
mean step time of each candidate count (all threads, one fewer, half, one) per batch size,
uses the fastest, and now and then times a step with a neighbouring count. Such a trial
costs little: at most about 1% of the steps' time is spent on slower trials (a trial that
was 40x slower is not repeated for ~4,000 steps), and a step that suddenly takes much
longer (another process started) triggers one at once. Thread counts do not change
llama.cpp's CPU results (same logits, measured), so seeded outputs are unaffected.

Example::

    governor = ThreadGovernor(max_threads=8)
    n = governor.choose(n_tokens=1)       # llama_set_n_threads(ctx, n, n) before the step
    governor.record(1, n, seconds=0.021)  # after it
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ThreadGovernor"]

_ALPHA = 0.2  # weight of a new step time in the running mean of the count in use
_BASE_INTERVAL = 16  # steps between trials after a change
_MAX_INTERVAL = 1024  # steps between trials once the choice has held
_TRIAL_BUDGET = 0.01  # share of step time that trials of slower counts may cost
_JUMP = 1.6  # a step this many times the mean: the machine got busier, try again now
# How much faster a trial must be than the count in use to replace it. Fewer threads must
# win clearly (on a quiet machine one thread fewer is often only ~10% slower, and one noisy
# step must not stick); more threads need only be faster, so a quiet machine gets them back.
_SWITCH_DOWN = 0.85
_SWITCH_UP = 0.98


def _bucket(n_tokens: int) -> int:
    """Batch sizes that cost about the same per step share one record: 1, 2, 4, 8 ..."""
    return 1 << max(0, n_tokens - 1).bit_length()


@dataclass
class _Record:
    """What one batch-size bucket has measured."""

    best: int
    mean: dict[int, float] = field(default_factory=dict)
    since_trial: int = 0
    interval: int = _BASE_INTERVAL
    next_alt: int = 0  # index into the neighbours, alternating up and down


class ThreadGovernor:
    """Picks each step's compute thread count from measured step times (one thread only:
    the scheduler's)."""

    def __init__(self, max_threads: int, *, enabled: bool = True) -> None:
        self.max_threads = max(1, max_threads)
        self.enabled = enabled and self.max_threads > 1
        counts = {self.max_threads, self.max_threads - 1, self.max_threads // 2, 1}
        self.candidates = sorted(c for c in counts if c >= 1)
        self.switches = 0
        self._records: dict[int, _Record] = {}

    def choose(self, n_tokens: int) -> int:
        """The thread count for a step of ``n_tokens`` batch tokens."""
        if not self.enabled:
            return self.max_threads
        rec = self._records.get(_bucket(n_tokens))
        if rec is None:
            return self.max_threads
        if rec.since_trial >= rec.interval and rec.best in rec.mean:
            neighbours = self._neighbours(rec.best)
            if neighbours:
                return neighbours[rec.next_alt % len(neighbours)]
        return rec.best

    def record(self, n_tokens: int, threads: int, seconds: float) -> None:
        """Account for a step that ran ``n_tokens`` on ``threads`` in ``seconds``."""
        if not self.enabled or seconds <= 0:
            return
        key = _bucket(n_tokens)
        rec = self._records.setdefault(key, _Record(best=self.max_threads))
        seconds /= max(1, n_tokens)  # per token: prompt chunks in one bucket differ in size
        if threads == rec.best:
            self._record_best(rec, seconds)
        else:
            self._record_trial(rec, threads, seconds)

    def _record_best(self, rec: _Record, seconds: float) -> None:
        old = rec.mean.get(rec.best)
        rec.since_trial += 1
        if old is None:
            rec.mean[rec.best] = seconds
            return
        rec.mean[rec.best] = old + _ALPHA * (seconds - old)
        if seconds > _JUMP * old and rec.since_trial > 2:
            rec.since_trial = rec.interval = _BASE_INTERVAL  # busier: try others now

    def _record_trial(self, rec: _Record, threads: int, seconds: float) -> None:
        rec.mean[threads] = seconds  # the newest trial is what the machine is like now
        rec.next_alt += 1
        rec.since_trial = 0
        current = rec.mean.get(rec.best, seconds)
        if seconds < (_SWITCH_UP if threads > rec.best else _SWITCH_DOWN) * current:
            rec.best = threads
            rec.interval = _BASE_INTERVAL  # confirm soon that the other way is not better
            self.switches += 1
            return
        # Slower: wait longer before the next trial, long enough that trials this much
        # slower cost at most _TRIAL_BUDGET of the steps' time.
        ratio = seconds / current if current > 0 else 1.0
        by_cost = int((ratio - 1.0) / _TRIAL_BUDGET)
        rec.interval = max(min(rec.interval * 2, _MAX_INTERVAL), by_cost)

    def _neighbours(self, count: int) -> list[int]:
        i = self.candidates.index(count) if count in self.candidates else -1
        if i < 0:
            return [c for c in self.candidates if c != count][:1]
        return [self.candidates[j] for j in (i + 1, i - 1) if 0 <= j < len(self.candidates)]

    def current(self, n_tokens: int = 1) -> int:
        """The count in use for steps of ``n_tokens`` (for stats and doctor)."""
        rec = self._records.get(_bucket(n_tokens))
        return rec.best if rec is not None and self.enabled else self.max_threads
