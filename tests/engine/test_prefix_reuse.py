"""Prefix reuse: a request sharing a prompt prefix with an earlier one skips its prefill."""

from __future__ import annotations

from pathlib import Path

from engine_helpers import make_settings

from localloom.engine import Engine

DOC = "the cat and the dog and the model and the text " * 6


def _cached(r: object) -> int:
    usage = r.usage  # type: ignore[attr-defined]
    assert usage is not None and usage.prompt_tokens_details is not None
    return int(usage.prompt_tokens_details.cached_tokens)


def test_second_task_on_the_same_text_reuses_its_cache(tiny_gguf: Path,
                                                       tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path, n_parallel=2)) as eng:
        eng.reload(str(tiny_gguf))
        first = eng.completions.create(prompt=DOC + "Task: summary", temperature=0,
                                       max_tokens=8)
        assert _cached(first) == 0
        second = eng.completions.create(prompt=DOC + "Task: question", temperature=0,
                                        max_tokens=8)
        shared = eng.count_tokens(DOC + "Task: ") - 1  # both continue past "Task: "
        assert _cached(second) >= shared - 2
        assert _cached(second) < second.usage.prompt_tokens  # type: ignore[union-attr]
    with Engine(make_settings(tmp_path / "cold", n_parallel=2)) as cold:
        cold.reload(str(tiny_gguf))
        again = cold.completions.create(prompt=DOC + "Task: question", temperature=0,
                                        max_tokens=8)
        assert _cached(again) == 0
        assert again.choices[0].text == second.choices[0].text


def test_next_chat_turn_reuses_the_conversation_so_far(engine: Engine) -> None:
    turns = [{"role": "user", "content": DOC}]
    r1 = engine.chat.completions.create(messages=turns, temperature=0, max_tokens=6)
    turns += [{"role": "assistant", "content": r1.choices[0].message.content or ""},
              {"role": "user", "content": "and the cat?"}]
    r2 = engine.chat.completions.create(messages=turns, temperature=0, max_tokens=6)
    assert r1.usage is not None
    assert _cached(r2) >= r1.usage.prompt_tokens - 1


def test_identical_prompt_recomputes_only_its_last_token(engine: Engine) -> None:
    prompt = DOC + "again"
    engine.completions.create(prompt=prompt, temperature=0, max_tokens=2)
    r = engine.completions.create(prompt=prompt, temperature=0, max_tokens=2)
    assert _cached(r) == engine.count_tokens(prompt) - 1


def test_prefix_cache_off_recomputes_the_whole_prompt(tiny_gguf: Path, tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path, n_parallel=1, prefix_cache=False)) as eng:
        eng.reload(str(tiny_gguf))
        eng.completions.create(prompt=DOC + "again", temperature=0, max_tokens=2)
        r = eng.completions.create(prompt=DOC + "again", temperature=0, max_tokens=2)
        assert _cached(r) == 0


def test_busy_engines_take_the_lowest_free_slot_idle_ones_the_least_recently_used(
        tiny_gguf: Path, tmp_path: Path) -> None:
    # llama.cpp decodes a run of consecutive slots in one pass: while others run, a new
    # prompt fills the lowest gap; idle, the oldest cache goes and recent ones stay.
    from localloom.engine.runtime import LlamaContext, LlamaModel, LoadOptions
    from localloom.engine.slots import Slots

    opts = LoadOptions.from_settings(make_settings(tmp_path, n_parallel=4))
    model = LlamaModel(tiny_gguf, opts)
    ctx = LlamaContext(model, opts)
    try:
        slots = Slots(ctx)
        prompts = [[1, 10 + i, 20 + i, 30 + i] for i in range(4)]
        taken = [slots.take(p, 1)[0][0] for p in prompts]
        assert sorted(taken) == [0, 1, 2, 3]
        for i, p in enumerate(prompts):
            slots.tokens[taken[i]] = list(p)  # as if each prompt had been decoded there
        for slot in (2, 0, 3, 1):  # slot 2 is now the least recently used
            slots.release(slot)
        new = [1, 99, 98, 97]
        assert slots.take(new, 1, compact=False) == ([2], 0)
        slots.release(2)
        assert slots.take(new, 1, compact=True) == ([0], 0)
        # A prompt that continues a cache still goes to that cache, busy or not.
        # (Nothing was decoded here, so the cache itself is empty and nothing is kept.)
        assert slots.take(prompts[taken.index(3)] + [7], 1, compact=True)[0] == [3]
        assert sorted(slots.take(new, 2, compact=True)[0]) == [1, 2]
    finally:
        ctx.close()
        model.close()
