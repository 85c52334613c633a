"""The built-in tasks: summarize, rewrite, counter, question, translate, write, proofread.

They register through the same hook as user tasks (:func:`register_builtin_tasks` gets
the registry's ``register_task``), so nothing about them is special. Their options follow
Chrome's built-in AI (Summarizer, Rewriter, Writer, Proofreader, Translator); the option
phrases and the summarize/question shapes are in :mod:`localloom.tasks.builtin_options`,
and docs/TASK_OPTIONS.md maps each option to its prompt text and limit.

The Spanish instructions start with LocalLoom's original prompts, word for word; the
chosen options are added after them. Completion templates are for base models (the
starter): a document to continue, whose answer ends at the first blank line (or, for
one-line answers, the first line break).
"""

from __future__ import annotations

from collections.abc import Callable

from localloom.tasks import builtin_options as opt
from localloom.tasks.definition import PromptTemplate, TaskDefinition
from localloom.tasks.options import OutputRules

__all__ = ["BUILTIN_TASKS", "register_builtin_tasks"]

SUMMARIZE = TaskDefinition(
    name="summarize",
    description="Summarize the text: key points, a TL;DR, a teaser or a headline.",
    long_text="map_reduce",
    completion_stop=("\n",),  # one sentence: base models otherwise repeat it line after line
    prompt_lookup=True,
    options=(opt.SUMMARY_TYPE, opt.SUMMARY_LENGTH, opt.TEXT_FORMAT),
    shape=opt.summarize_shape,
    prompts={
        "en": PromptTemplate(
            instruction="{summary_instruction}:",
            completion="Article:\n{text}\n\n{summary_label}",
        ),
        "es": PromptTemplate(
            instruction="{summary_instruction}:",
            completion="Artículo:\n{text}\n\n{summary_label}",
        ),
    },
)

REWRITE = TaskDefinition(
    name="rewrite",
    description="Rewrite the text with clearer wording and structure.",
    prompt_lookup=True,
    options=(opt.REWRITE_TONE, opt.REWRITE_LENGTH, opt.REWRITE_FORMAT),
    prompts={
        "en": PromptTemplate(
            instruction="Rewrite the following text, improving its clarity and "
            "structure{tone}{length}{format}:",
            completion="Original text:\n{text}\n\nThe same text, rewritten more "
            "clearly{tone}{length}{format}:",
        ),
        "es": PromptTemplate(
            instruction="Reescribe el siguiente texto mejorando su claridad y "
            "estructura{tone}{length}{format}:",
            completion="Texto original:\n{text}\n\nEl mismo texto, reescrito con más "
            "claridad{tone}{length}{format}:",
        ),
    },
)

COUNTER = TaskDefinition(
    name="counter",
    description="Give a balanced counter-argument to the text.",
    options=(opt.COUNTER_LENGTH,),
    prompts={
        "en": PromptTemplate(
            instruction="Give a balanced counter-argument to the following text{length}:",
            completion="Argument:\n{text}\n\nA balanced counter-argument{length}:",
        ),
        "es": PromptTemplate(
            instruction="Proporciona un contrargumento balanceado al siguiente texto{length}:",
            completion="Argumento:\n{text}\n\nUn contrargumento balanceado{length}:",
        ),
    },
)

QUESTION = TaskDefinition(
    name="question",
    description="Ask thoughtful, interesting questions about the text (--count 1-5).",
    completion_stop=("\n",),  # one question, one line
    options=(opt.QUESTION_COUNT,),
    shape=opt.question_shape,
    prompts={
        "en": PromptTemplate(
            instruction="{question_instruction}:",
            completion="Text:\n{text}\n\n{question_label}",
        ),
        "es": PromptTemplate(
            instruction="{question_instruction}:",
            completion="Texto:\n{text}\n\n{question_label}",
        ),
    },
)

TRANSLATE = TaskDefinition(
    name="translate",
    description="Translate the text into another language (--to; --from or detected).",
    needs_target=True,
    temperature=0.3,  # translation wants fidelity more than variety
    options=(opt.TRANSLATE_FROM,),
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

WRITE = TaskDefinition(
    name="write",
    description="Write new text for a request (an email, a post, a note).",
    options=(opt.WRITE_TONE, opt.WRITE_LENGTH, opt.TEXT_FORMAT),
    prompts={
        "en": PromptTemplate(
            instruction="Write what the following request asks for{tone}{length}{format}. "
            "Reply with the text only:",
            completion="Request: {text}\n\nThe text it asks for{tone}{length}{format}:",
        ),
        "es": PromptTemplate(
            instruction="Escribe lo que pide la siguiente petición{tone}{length}{format}. "
            "Responde solo con el texto:",
            completion="Petición: {text}\n\nEl texto que pide{tone}{length}{format}:",
        ),
    },
)

PROOFREAD = TaskDefinition(
    name="proofread",
    description="Correct spelling and grammar; lists each correction with its position.",
    temperature=0.0,  # a correction, not a variation
    prompt_lookup=True,
    reports_corrections=True,
    # A proofread text is about as long as the original: never let it run on.
    rules=OutputRules(words_per_input_word=1.5),
    prompts={
        "en": PromptTemplate(
            instruction="Correct the spelling, grammar and punctuation of the following text. "
            "Change nothing else, and reply with the corrected text only:",
            completion="Text with mistakes:\n{text}\n\nThe same text with its spelling, "
            "grammar and punctuation corrected:",
        ),
        "es": PromptTemplate(
            instruction="Corrige la ortografía, la gramática y la puntuación del siguiente "
            "texto. No cambies nada más y responde solo con el texto corregido:",
            completion="Texto con errores:\n{text}\n\nEl mismo texto con la ortografía, la "
            "gramática y la puntuación corregidas:",
        ),
    },
)

BUILTIN_TASKS: tuple[TaskDefinition, ...] = (SUMMARIZE, REWRITE, COUNTER, QUESTION, TRANSLATE,
                                             WRITE, PROOFREAD)


def register_builtin_tasks(register: Callable[[TaskDefinition], object]) -> None:
    """Hook: register every built-in task (exactly as user tasks are registered)."""
    for task in BUILTIN_TASKS:
        register(task)
