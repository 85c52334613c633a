"""The built-in tasks: summarize, rewrite, counter, question, translate.

They register through the same hook as user tasks (:func:`register_builtin_tasks` gets
the registry's ``register_task``), so nothing about them is special.

The Spanish instructions are LocalLoom's original prompts, word for word. Completion
templates are for base models (the starter): a document to continue, whose answer ends
at the first blank line (or, for one-line answers, the first line break).
"""

from __future__ import annotations

from collections.abc import Callable

from localloom.tasks.definition import PromptTemplate, TaskDefinition

__all__ = ["BUILTIN_TASKS", "register_builtin_tasks"]

SUMMARIZE = TaskDefinition(
    name="summarize",
    description="Summarize the text concisely and clearly.",
    long_text="map_reduce",
    completion_stop=("\n",),  # one sentence: base models otherwise repeat it line after line
    prompt_lookup=True,
    prompts={
        "en": PromptTemplate(
            instruction="Summarize the following text concisely and clearly:",
            completion="Article:\n{text}\n\nOne-sentence summary:",
        ),
        "es": PromptTemplate(
            instruction="Resume el siguiente texto de manera concisa y clara:",
            completion="Artículo:\n{text}\n\nResumen en una frase:",
        ),
    },
)

REWRITE = TaskDefinition(
    name="rewrite",
    description="Rewrite the text with clearer wording and structure.",
    prompt_lookup=True,
    prompts={
        "en": PromptTemplate(
            instruction="Rewrite the following text, improving its clarity and structure:",
            completion="Original text:\n{text}\n\nThe same text, rewritten more clearly:",
        ),
        "es": PromptTemplate(
            instruction="Reescribe el siguiente texto mejorando su claridad y estructura:",
            completion="Texto original:\n{text}\n\nEl mismo texto, reescrito con más claridad:",
        ),
    },
)

COUNTER = TaskDefinition(
    name="counter",
    description="Give a balanced counter-argument to the text.",
    prompts={
        "en": PromptTemplate(
            instruction="Give a balanced counter-argument to the following text:",
            completion="Argument:\n{text}\n\nA balanced counter-argument:",
        ),
        "es": PromptTemplate(
            instruction="Proporciona un contrargumento balanceado al siguiente texto:",
            completion="Argumento:\n{text}\n\nUn contrargumento balanceado:",
        ),
    },
)

QUESTION = TaskDefinition(
    name="question",
    description="Ask a thoughtful, interesting question about the text.",
    completion_stop=("\n",),  # one question, one line
    prompts={
        "en": PromptTemplate(
            instruction="Generate a thoughtful and interesting question based on the "
            "following text:",
            completion="Text:\n{text}\n\nA thoughtful question about this text:",
        ),
        "es": PromptTemplate(
            instruction="Genera una pregunta reflexiva e interesante basada en el siguiente "
            "texto:",
            completion="Texto:\n{text}\n\nUna pregunta reflexiva sobre este texto:",
        ),
    },
)

TRANSLATE = TaskDefinition(
    name="translate",
    description="Translate the text into another language (--to).",
    needs_target=True,
    temperature=0.3,  # translation wants fidelity more than variety
    prompts={
        "en": PromptTemplate(
            instruction="Translate the following {source_language} text into {target}. "
            "Reply with the translation only:",
            completion="{source_language}:\n{text}\n\n{target}:",
        ),
        "es": PromptTemplate(
            instruction="Traduce el siguiente texto en {source_language} al {target}. "
            "Responde solo con la traducción:",
            completion="En {source_language}:\n{text}\n\nEn {target}:",
        ),
    },
)

BUILTIN_TASKS: tuple[TaskDefinition, ...] = (SUMMARIZE, REWRITE, COUNTER, QUESTION, TRANSLATE)


def register_builtin_tasks(register: Callable[[TaskDefinition], object]) -> None:
    """Hook: register every built-in task (exactly as user tasks are registered)."""
    for task in BUILTIN_TASKS:
        register(task)
