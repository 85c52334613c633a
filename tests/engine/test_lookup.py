"""Prompt-lookup speculative decoding: fewer decode steps, the very same output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import make_settings

from localloom.engine import Engine
from localloom.engine.lookup import MAX_DRAFT, MIN_STEP_S, LookupGuard, NgramIndex, PlainRate

# The tiny model's greedy answers fall into loops, which is what lookup guesses well: the
# repeated phrase gives it n-grams to match from the first token on.
PROMPT = "the cat and the dog and the cat and the dog and the model text " * 4
NO_EOS = {"2": -100}


def _engine(tmp: Path, model: Path, mode: str) -> Engine:
    eng = Engine(make_settings(tmp, prompt_lookup=mode))
    eng.reload(str(model))
    return eng


@pytest.fixture(scope="module")
def engines(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, Engine]]:
    """The same model with prompt lookup off and always on."""
    made = {mode: _engine(tmp_path_factory.mktemp(mode), tiny_gguf, mode)
            for mode in ("off", "on", "auto")}
    yield made
    for eng in made.values():
        eng.close()


def _complete(eng: Engine, **kwargs: object) -> tuple[str, str, int, int, int]:
    """(text, finish reason, completion tokens, decode steps, guesses accepted)."""
    before = eng.runtime_stats()
    args: dict[str, object] = {"prompt": PROMPT, "max_tokens": 120, "logit_bias": NO_EOS,
                               "prompt_lookup": True}
    r = eng.completions.create(**{**args, **kwargs})  # type: ignore[call-overload]
    after = eng.runtime_stats()
    assert r.usage is not None
    return (r.choices[0].text, str(r.choices[0].finish_reason), r.usage.completion_tokens,
            after.steps - before.steps, after.lookup_accepted - before.lookup_accepted)


def test_greedy_output_is_unchanged_in_far_fewer_steps(engines: dict[str, Engine]) -> None:
    text, _, tokens, steps, accepted = _complete(engines["off"], temperature=0)
    fast_text, _, fast_tokens, fast_steps, fast_accepted = _complete(engines["on"],
                                                                     temperature=0)
    assert (fast_text, fast_tokens) == (text, tokens)
    assert accepted == 0 and steps == tokens  # one step per token without lookup
    assert fast_accepted > tokens // 4  # the loop was guessed ...
    assert fast_steps == tokens - fast_accepted  # ... and each right guess saved a step
    assert fast_steps < steps * 0.75


@pytest.mark.parametrize("seed", [1, 7])
def test_sampled_output_with_a_seed_is_unchanged(engines: dict[str, Engine], seed: int) -> None:
    # Each kept token was drawn from the same distribution with the same random draw.
    plain = _complete(engines["off"], temperature=0.8, seed=seed, top_k=3)
    guessed = _complete(engines["on"], temperature=0.8, seed=seed, top_k=3)
    assert guessed[:3] == plain[:3]


@pytest.mark.parametrize("max_tokens", [1, 2, 9, 57])
def test_max_tokens_is_exact_when_guesses_run_past_it(engines: dict[str, Engine],
                                                      max_tokens: int) -> None:
    text, reason, tokens, _, _ = _complete(engines["on"], temperature=0, max_tokens=max_tokens)
    assert (tokens, reason) == (max_tokens, "length")
    assert text == _complete(engines["off"], temperature=0, max_tokens=max_tokens)[0]


def test_a_stop_string_inside_an_accepted_guess_ends_there(engines: dict[str, Engine]) -> None:
    full = _complete(engines["off"], temperature=0)[0]
    stop = full[40:43]  # three characters from the middle of the looping answer
    expected = _complete(engines["off"], temperature=0, stop=[stop])
    got = _complete(engines["on"], temperature=0, stop=[stop])
    assert got[:3] == expected[:3]
    assert got[1] == "stop" and stop not in got[0]


def test_the_cache_after_rejected_guesses_serves_the_next_request(
        engines: dict[str, Engine]) -> None:
    # Rejected guesses are dropped from the KV cache; a follow-up that reuses this slot's
    # prefix (the prompt plus the answer) must see exactly what plain decoding left there.
    first = _complete(engines["on"], temperature=0)[0]
    follow = {"prompt": PROMPT + first + " and the cat", "temperature": 0, "max_tokens": 40}
    assert _complete(engines["on"], **follow)[0] == _complete(engines["off"], **follow)[0]


def test_auto_guesses_only_where_a_plain_step_is_slow_enough_to_win(
        engines: dict[str, Engine]) -> None:
    # The tiny model decodes a token in well under MIN_STEP_S on an idle machine: there a
    # guessing step costs more than right guesses save, so auto decodes plainly. (On a
    # loaded machine its steps may take longer; the decision follows the measured time.)
    eng = engines["auto"]
    for _ in range(2):  # the first request also teaches the engine its plain step time
        text, _, tokens, steps, accepted = _complete(eng, temperature=0)
    plain = next(iter(eng._runners.values())).scheduler.steps.plain
    if plain.step_s < MIN_STEP_S:
        assert accepted == 0 and steps == tokens
    assert text == _complete(engines["off"], temperature=0)[0]


def test_plain_rate_decides_whether_guessing_can_pay() -> None:
    assert not _plain(0.0013).worth_guessing  # a 1B model on an H100: auto lost 25%
    assert _plain(0.0034).worth_guessing  # the 7B shape there: auto gained 23%
    assert not PlainRate().worth_guessing  # nothing measured yet


def test_requests_that_do_not_ask_are_decoded_plainly(engines: dict[str, Engine]) -> None:
    _, _, tokens, steps, accepted = _complete(engines["on"], temperature=0,
                                              prompt_lookup=False)
    assert accepted == 0 and steps == tokens


def test_chat_rewrite_task_asks_for_lookup(engines: dict[str, Engine]) -> None:
    from localloom.tasks import TaskRunner

    eng = engines["on"]
    before = eng.runtime_stats().lookup_drafted
    model = eng.loaded_model
    assert model is not None
    TaskRunner(eng).run("rewrite", PROMPT, model=model, max_tokens=60, temperature=0)
    assert eng.runtime_stats().lookup_drafted > before


# ----------------------------------------------------------------- the parts, alone


def test_ngram_index_proposes_what_followed_the_latest_match() -> None:
    index = NgramIndex([5, 6, 7, 8, 9, 5, 6])
    assert index.draft(3) == [7, 8, 9]
    index.extend([7, 1, 5, 6])  # "5 6" now last seen followed by 7, 1
    assert index.draft(2) == [7, 1]
    assert index.draft(0) == []
    assert NgramIndex([1, 2, 3]).draft(4) == []  # nothing repeats
    # A 3-gram match wins over a more recent 2-gram one.
    index = NgramIndex([1, 2, 3, 40, 9, 2, 3, 50, 1, 2, 3])
    assert index.draft(1) == [40]


def _plain(step_s: float) -> PlainRate:
    rate = PlainRate()
    for _ in range(5):
        rate.record(step_s)
    return rate


def test_guard_stops_guessing_when_slower_than_plain_decoding() -> None:
    plain = _plain(0.010)  # 100 tokens/s without guessing
    guard = LookupGuard(adaptive=True)
    guard.record(0.025, drafted=4, accepted=1, plain=plain)  # 80 tokens/s
    assert guard.active  # a first trial is judged after 2 steps
    guard.record(0.025, drafted=4, accepted=1, plain=plain)
    assert not guard.active and not guard.ready(10)
    assert guard.ready(32)  # paused for 32 tokens, then it guesses again ...
    guard.record(0.025, drafted=4, accepted=1, plain=plain, n_gen=32)  # judged at once
    assert not guard.ready(95) and guard.ready(96)  # ... and next time waits twice as long
    cheap = LookupGuard(adaptive=True)  # a CPU: a guessing step costs 1.2 plain steps
    for _ in range(2):
        cheap.record(0.012, drafted=4, accepted=0, plain=plain, n_gen=40)
    assert not cheap.ready(47) and cheap.ready(48)  # tries again after 8 tokens
    winning = LookupGuard(adaptive=True)
    for _ in range(10):
        winning.record(0.015, drafted=4, accepted=3, plain=plain)  # 267 tokens/s
    assert winning.active


def test_guard_in_on_mode_never_stops_and_adapts_its_draft_length() -> None:
    plain = _plain(0.010)
    guard = LookupGuard(adaptive=False, draft_len=4)
    for _ in range(10):
        guard.record(1.0, drafted=4, accepted=0, plain=plain)
    assert guard.active and guard.draft_len == 1
    for _ in range(10):
        guard.record(0.01, drafted=guard.draft_len, accepted=guard.draft_len, plain=plain)
    assert guard.draft_len == MAX_DRAFT
