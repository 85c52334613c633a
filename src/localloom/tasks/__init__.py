"""Tasks on text: summarize, rewrite, counter, question, translate, write, proofread, and
the user's own; each with its options (Chrome's built-in AI ones: type, length, format,
tone, ...).

Example::

    from localloom import Engine
    from localloom.tasks import TaskRunner
    runner = TaskRunner(Engine(), settings=settings)
    result = runner.run("summarize", text, model="starter", on_text=print,
                        options={"type": "headline"})
"""

from __future__ import annotations

from localloom.tasks.cancel import Cancellation
from localloom.tasks.corrections import Correction
from localloom.tasks.definition import PromptTemplate, TaskDefinition
from localloom.tasks.inputs import Document, fetch_url, read_file, read_stream
from localloom.tasks.language import LanguageDetector
from localloom.tasks.options import OutputRules, TaskOption
from localloom.tasks.registry import TaskRegistry
from localloom.tasks.runner import ModelCall, Progress, TaskEvent, TaskResult, TaskRunner, TextDelta

__all__ = [
    "Cancellation",
    "Correction",
    "Document",
    "LanguageDetector",
    "ModelCall",
    "OutputRules",
    "Progress",
    "PromptTemplate",
    "TaskDefinition",
    "TaskEvent",
    "TaskOption",
    "TaskRegistry",
    "TaskResult",
    "TaskRunner",
    "TextDelta",
    "fetch_url",
    "read_file",
    "read_stream",
]
