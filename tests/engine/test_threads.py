"""The thread governor moves to fewer threads while the CPU is busy and back when it is not.

Step times are fed in as measured on the 2-core box with the starter (quiet: 2 threads
9.7 ms/token, 1 thread 10.8; one busy process: 2 threads 21 ms, 1 thread 11.5), so these
tests follow the governor's decisions without depending on this machine's load; the
benchmark (bench/robustness.py) measures the real effect.
"""

from __future__ import annotations

from localloom.engine.threads import ThreadGovernor

QUIET = {2: 0.0097, 1: 0.0108}
BUSY = {2: 0.021, 1: 0.0115}
HEAVY = {2: 0.067, 1: 0.024}  # three busy processes


def _run(gov: ThreadGovernor, times: dict[int, float], steps: int) -> list[int]:
    used = []
    for _ in range(steps):
        n = gov.choose(1)
        gov.record(1, n, times[n])
        used.append(n)
    return used


def _cost(used: list[int], times: dict[int, float]) -> float:
    return sum(times[n] for n in used)


def test_a_quiet_machine_keeps_every_thread_and_trials_cost_under_one_percent() -> None:
    gov = ThreadGovernor(2)
    used = _run(gov, QUIET, 2000)
    assert used[-1] == 2 and gov.switches == 0
    assert _cost(used, QUIET) <= 1.01 * 2000 * QUIET[2]


def test_a_busy_core_moves_to_one_thread_within_a_few_dozen_steps() -> None:
    gov = ThreadGovernor(2)
    _run(gov, QUIET, 200)
    used = _run(gov, BUSY, 400)
    first_one = used.index(1)
    assert first_one <= 40
    assert used[-200:].count(1) >= 190
    assert _cost(used, BUSY) < 0.6 * 400 * BUSY[2]  # far better than staying on 2


def test_heavy_load_does_not_keep_paying_for_trials_of_more_threads() -> None:
    gov = ThreadGovernor(2)
    used = _run(gov, HEAVY, 3000)
    assert _cost(used[-2000:], HEAVY) <= 1.03 * 2000 * HEAVY[1]


def test_when_the_load_goes_away_all_threads_come_back() -> None:
    gov = ThreadGovernor(2)
    _run(gov, BUSY, 300)
    assert gov.current() == 1
    used = _run(gov, QUIET, 3000)
    assert used[-1] == 2


def test_batch_sizes_are_judged_apart_and_a_disabled_governor_never_changes() -> None:
    gov = ThreadGovernor(4)
    assert gov.candidates == [1, 2, 3, 4]
    _run(gov, {4: 0.01, 3: 0.02, 2: 0.03, 1: 0.04}, 100)
    assert gov.choose(64) == 4 and gov.current(1) == 4
    off = ThreadGovernor(2, enabled=False)
    assert _run(off, BUSY, 100) == [2] * 100
    assert ThreadGovernor(1).choose(1) == 1
