"""The task registry, user tasks from tasks.toml, prompts and language choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from localloom.config import Settings
from localloom.errors import ConfigError, TaskError
from localloom.tasks import LanguageDetector, PromptTemplate, TaskDefinition, TaskRegistry
from localloom.tasks.prompts import PromptPlan

SPANISH_ORIGINALS = {
    "summarize": "Resume el siguiente texto de manera concisa y clara:",
    "rewrite": "Reescribe el siguiente texto mejorando su claridad y estructura:",
    "counter": "Proporciona un contrargumento balanceado al siguiente texto:",
    "question": "Genera una pregunta reflexiva e interesante basada en el siguiente texto:",
}

ENGLISH = ("The committee met on Tuesday to discuss the new budget for the public library, "
           "and most members agreed that the reading rooms should stay open in the evenings.")
SPANISH = ("El comité se reunió el martes para hablar del nuevo presupuesto de la biblioteca "
           "pública, y la mayoría de los miembros acordó que las salas de lectura sigan abiertas "
           "por la tarde.")


def _tldr(name: str = "tldr") -> TaskDefinition:
    return TaskDefinition(name=name, description="TL;DR", prompts={
        "en": PromptTemplate(instruction="TL;DR this:", completion="{text}\n\nTL;DR:")})


def test_builtin_tasks_are_all_registered() -> None:
    registry = TaskRegistry.default(Settings())
    assert registry.names() == ["summarize", "rewrite", "counter", "question", "translate",
                                "write", "proofread"]


def test_builtin_spanish_prompts_start_with_the_original_wording() -> None:
    # With the default options; the options' phrases come after the original words.
    for name, original in SPANISH_ORIGINALS.items():
        prompt = _plan(name, "chat", answer="es", source="es").build("x")
        assert prompt.messages is not None
        content = prompt.messages[0]["content"]
        assert content.startswith(original[:-1]), content
        assert content.endswith(":\n\nx")
    rewrite = _plan("rewrite", "chat", answer="es", source="es").build("x")
    assert rewrite.messages is not None  # the rewrite defaults (as-is) add nothing
    assert rewrite.messages[0]["content"] == SPANISH_ORIGINALS["rewrite"] + "\n\nx"


def test_tasks_default_to_the_original_sampling_and_quick_mode_halves_the_length() -> None:
    task = TaskRegistry.default(Settings()).get("summarize")
    assert (task.temperature, task.max_tokens, task.top_p) == (0.7, 256, 0.9)
    assert task.max_tokens_for(quick=True) == 128
    assert task.max_tokens_for(quick=False) == 256


def test_registering_a_taken_name_is_refused() -> None:
    registry = TaskRegistry.default(Settings())
    with pytest.raises(ConfigError, match="'summarize' is already registered"):
        registry.register_task(_tldr("summarize"))
    registry.register_task(_tldr())
    with pytest.raises(ConfigError, match="'tldr' is already registered"):
        registry.register_task(_tldr())


def test_register_task_works_as_a_decorator() -> None:
    registry = TaskRegistry()

    @registry.register_task
    def shout() -> TaskDefinition:
        return _tldr("shout")

    assert registry.get("shout").description == "TL;DR"
    assert shout().name == "shout"


def test_unknown_task_suggests_the_close_name() -> None:
    with pytest.raises(TaskError, match="Did you mean 'summarize'"):
        TaskRegistry.default(Settings()).get("sumarize")


def _write_tasks(text: str) -> Path:
    path = Settings().config_dir / "tasks.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_user_task_from_tasks_toml_is_registered_like_a_builtin() -> None:
    _write_tasks('''
[[task]]
name = "tldr"
description = "A one-line TL;DR"
max_tokens = 64
long_text = "map_reduce"
[task.prompts.en]
instruction = "Write a one-line TL;DR of the following text:"
completion = "Text:\\n{text}\\n\\nTL;DR:"
[task.prompts.es]
instruction = "Escribe un resumen de una línea del siguiente texto:"
''')
    registry = TaskRegistry.default(Settings())
    assert registry.problems == []
    task = registry.get("tldr")
    assert task.max_tokens == 64 and task.long_text == "map_reduce"
    assert task.temperature == 0.7  # unset values take the task defaults
    assert task.prompts["en"].completion == "Text:\n{text}\n\nTL;DR:"
    assert task.origin.endswith("tasks.toml")
    # No completion template given: base models get the instruction followed by the text.
    assert "{text}" in task.prompts["es"].completion


def test_bad_user_tasks_are_reported_by_file_task_and_field_and_good_ones_still_load() -> None:
    path = _write_tasks('''
[[task]]
name = "good"
[task.prompts.en]
instruction = "Do it:"

[[task]]
name = "hot"
temperature = 9.0
[task.prompts.en]
instruction = "Do it:"

[[task]]
name = "nobody"
[task.prompts.en]
instruction = "Do it:"
completion = "no placeholder here"

[[task]]
name = "summarize"
[task.prompts.en]
instruction = "Mine instead:"
''')
    registry = TaskRegistry.default(Settings())
    assert "good" in registry
    assert registry.get("summarize").origin == "builtin"
    problems = [str(p) for p in registry.problems]
    assert len(problems) == 3
    assert problems[0].startswith(f"{path}: task 'hot', field 'temperature'")
    assert "task 'nobody', field 'prompts.en.completion'" in problems[1]
    assert "{text}" in problems[1]
    assert "task 'summarize', field 'name'" in problems[2]


def test_tasks_toml_that_is_not_toml_is_one_problem_not_a_crash() -> None:
    _write_tasks("[[task]\nname = ")
    registry = TaskRegistry.default(Settings())
    assert len(registry) == 7
    assert "cannot be read as TOML" in str(registry.problems[0])


def test_language_detection_tells_english_from_spanish_every_time() -> None:
    from langdetect import DetectorFactory

    detector = LanguageDetector()
    for _ in range(3):
        assert detector.detect(ENGLISH) == "en"
        assert detector.detect(SPANISH) == "es"
    assert detector.detect("¿Qué tal, cómo está?") == "es"
    assert detector.detect("12345 !!!") == "en"  # nothing to go on: the default
    assert DetectorFactory.seed is None  # our seed is ours; langdetect's global is untouched


def _plan(task: str, style: str, answer: str = "en", source: str = "en",
          target: str | None = None) -> PromptPlan:
    definition = TaskRegistry.default(Settings()).get(task)
    return PromptPlan(task=definition, style=style,  # type: ignore[arg-type]
                      answer_language=answer, source_language=source, target_language=target)


def test_base_models_get_a_completion_prompt_that_stops_after_the_answer() -> None:
    prompt = _plan("summarize", "completion").build("Herons wait.")
    assert prompt.messages is None
    assert prompt.text == "Article:\nHerons wait.\n\nOne-sentence summary:"
    assert prompt.stop == ["\n"]  # one sentence, one line
    assert _plan("rewrite", "completion").build("x").stop == ["\n\n"]


def test_chat_models_get_the_instruction_in_the_texts_language() -> None:
    prompt = _plan("counter", "chat", answer="es", source="es").build("Las garzas esperan.")
    assert prompt.text is None and prompt.stop == []
    assert prompt.messages == [{"role": "user", "content": SPANISH_ORIGINALS["counter"][:-1]
                                + ", en cuatro frases como máximo:\n\nLas garzas esperan."}]


def test_a_language_without_prompts_gets_english_ones_asking_for_that_language() -> None:
    prompt = _plan("question", "chat", answer="fr", source="fr").build("Le héron attend.")
    assert prompt.messages is not None
    assert prompt.messages[0]["content"].startswith("Generate a thoughtful")
    assert "Answer in French." in prompt.messages[0]["content"]


def test_translate_names_both_languages_in_the_prompt() -> None:
    chat = _plan("translate", "chat", answer="es", source="en", target="es").build("Hi.")
    assert chat.messages is not None
    assert chat.messages[0]["content"].startswith(
        "Traduce el siguiente texto en inglés al español.")
    base = _plan("translate", "completion", answer="es", source="en", target="es").build("Hi.")
    assert base.text == "En inglés:\nHi.\n\nEn español:"


def test_braces_in_the_users_text_are_left_alone() -> None:
    text = "Use {language} and {text} and {0.__class__} literally."
    prompt = _plan("rewrite", "completion").build(text)
    assert prompt.text is not None and text in prompt.text
