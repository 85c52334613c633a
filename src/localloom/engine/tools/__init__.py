"""Tool calling and reasoning output, on the text the engine produces.

* :mod:`.protocol`: OpenAI's wire shapes (tools, tool choice, calls, streamed pieces).
* :mod:`.parsers`: one parser per model family's call syntax, in a registry.
* :mod:`.output`: splits an answer, as it streams, into reasoning, text and calls.
* :mod:`.plan`: per request, the template's inputs, the forcing grammar and the output spec.

Example::

    style = ChatStyle.from_template(template, variables)
    plan = plan_chat(request, style)
"""

from __future__ import annotations

from localloom.engine.tools.output import (
    Content,
    OutputSpec,
    OutputSplitter,
    Reasoning,
    ReasoningMarkers,
)
from localloom.engine.tools.parsers import (
    ParsedCall,
    ToolCallParser,
    ToolParserRegistry,
    builtin_parsers,
)
from localloom.engine.tools.plan import GENERIC_TOOL_PROMPT, ChatPlan, ChatStyle, plan_chat

__all__ = [
    "GENERIC_TOOL_PROMPT",
    "ChatPlan",
    "ChatStyle",
    "Content",
    "OutputSpec",
    "OutputSplitter",
    "ParsedCall",
    "Reasoning",
    "ReasoningMarkers",
    "ToolCallParser",
    "ToolParserRegistry",
    "builtin_parsers",
    "plan_chat",
]
