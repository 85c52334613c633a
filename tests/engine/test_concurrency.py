"""Many callers at once: batched together, yet each gets exactly its own answer."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from engine_helpers import greedy_text, make_settings

from localloom.engine import Engine
from localloom.errors import GenerationInterrupted, ServerBusyError

PROMPTS = [f"the {w} and the {v}" for w, v in
           [("cat", "dog"), ("dog", "cat"), ("model", "text"), ("one", "two"),
            ("yes", "no"), ("data", "world"), ("hello", "question"), ("three", "summary")]]


def test_eight_threads_at_once_each_get_their_solo_answer(engine: Engine) -> None:
    solo = {p: greedy_text(engine, p, max_tokens=32) for p in PROMPTS}
    assert len(set(solo.values())) > 1  # the prompts really lead to different answers
    results: dict[str, str] = {}
    barrier = threading.Barrier(len(PROMPTS))

    def worker(prompt: str) -> None:
        barrier.wait()
        results[prompt] = greedy_text(engine, prompt, max_tokens=32)

    threads = [threading.Thread(target=worker, args=(p,)) for p in PROMPTS]
    steps_before = engine.runtime_stats().steps
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == solo
    # batched: far fewer decode steps than 8 requests one after another would need
    assert engine.runtime_stats().steps - steps_before < 8 * 32


def test_streams_interleave_while_a_long_prompt_is_prefilled(engine: Engine) -> None:
    expected = greedy_text(engine, "the cat", max_tokens=20)
    long_prompt = "the dog and the cat " * 20
    stream = engine.chat.completions.create(
        messages=[{"role": "user", "content": "the cat"}], temperature=0, max_tokens=20,
        stream=True)
    other = threading.Thread(target=greedy_text, args=(engine, long_prompt, 8))
    other.start()
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    other.join(timeout=60)
    assert text == expected


def test_cancelled_sequence_slot_is_reused_within_one_decode_step(
        tiny_gguf: Path, tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path, n_parallel=1)) as eng:
        eng.reload(str(tiny_gguf))
        stream = eng.chat.completions.create(
            messages=[{"role": "user", "content": "the cat"}], temperature=0,
            max_tokens=400, stream=True)
        next(stream)
        queued: dict[str, object] = {}
        waiter = threading.Thread(target=lambda: queued.update(
            r=eng.completions.create(prompt="the dog", temperature=0, max_tokens=5)))
        waiter.start()
        deadline = time.monotonic() + 30
        while eng.runtime_stats().requests_waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert eng.runtime_stats().requests_waiting == 1  # the only slot is busy
        stream.close()
        steps_at_cancel = eng.runtime_stats().steps
        waiter.join(timeout=30)
        # the queued request needs 5 steps (1 prefill+sample, 4 decodes); at most one
        # more step of the cancelled stream may run before its slot is handed over
        assert eng.runtime_stats().steps - steps_at_cancel <= 5 + 1
        assert queued["r"].choices[0].finish_reason == "length"  # type: ignore[attr-defined]


def test_full_waiting_queue_raises_server_busy(tiny_gguf: Path, tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path, n_parallel=1, max_queue=0)) as eng:
        eng.reload(str(tiny_gguf))
        with eng.chat.completions.create(messages=[{"role": "user", "content": "x"}],
                                         max_tokens=400, stream=True) as stream:
            next(stream)
            with pytest.raises(ServerBusyError) as info:
                eng.completions.create(prompt="the dog", max_tokens=5)
            assert info.value.retry_after > 0
        # once the stream is closed, the slot serves the next request
        assert eng.completions.create(prompt="the dog", max_tokens=3).choices[0].text is not None


def test_interrupt_stops_running_generations(engine: Engine) -> None:
    stream = engine.chat.completions.create(messages=[{"role": "user", "content": "x"}],
                                            max_tokens=400, stream=True)
    next(stream)
    engine.interrupt()
    with pytest.raises(GenerationInterrupted):
        for _ in stream:
            pass
    assert greedy_text(engine, "the cat", max_tokens=3)  # the engine keeps working
