"""What one chat request needs for tools and reasoning: template inputs, grammar, output spec.

A :class:`ChatStyle` is worked out once per loaded model from its chat template: which
call syntax it uses (:mod:`.parsers`), whether the template takes the Hugging Face
``tools`` variable, whether it has a thinking switch (``enable_thinking``) and its
thinking markers. :func:`plan_chat` then turns a request into the template's messages and
variables, the grammar that forces a call (``tool_choice`` "required" or a named function)
and the :class:`OutputSpec` the response side splits the output with.

Templates that do not take ``tools`` get the generic tool prompt instead: a system message
listing the functions as JSON and showing the call syntax of the model's parser
(:data:`GENERIC_TOOL_PROMPT`); earlier calls and tool results are written into the history
as text in that syntax.

Example::

    style = ChatStyle.from_template(template, variables, architecture="qwen2")
    plan = plan_chat(req, style)
    text = fmt.render(plan.messages, **plan.variables)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localloom.engine.tools.output import OutputSpec, ReasoningMarkers, reasoning_markers_for
from localloom.engine.tools.parsers import ParsedCall, ToolCallParser, builtin_parsers

if TYPE_CHECKING:
    from localloom.engine.protocol import ChatCompletionRequest, ChatMessage

__all__ = ["GENERIC_TOOL_PROMPT", "ChatPlan", "ChatStyle", "plan_chat", "tool_grammar"]

GENERIC_TOOL_PROMPT = (
    "You can call the following functions. Each is described by a JSON schema of its "
    "arguments:\n{tools}\n\nTo call a function, answer with only this, and nothing else:\n"
    "{example}\nIf no function is needed, answer normally."
)
_CALL_RULE = "tool-call"


@dataclass(frozen=True)
class ChatStyle:
    """A loaded model's tool and thinking conventions, from its chat template."""

    parser: ToolCallParser
    takes_tools: bool = False
    thinking_switch: bool = False
    reads_effort: bool = False
    reasoning: ReasoningMarkers = field(default_factory=lambda: reasoning_markers_for(None))

    @classmethod
    def from_template(cls, template: str | None, variables: frozenset[str],
                      architecture: str | None = None) -> ChatStyle:
        """The style a template shows; ``variables`` are the names it reads."""
        return cls(parser=builtin_parsers().for_model(template, architecture),
                   takes_tools="tools" in variables,
                   thinking_switch="enable_thinking" in variables,
                   reads_effort="reasoning_effort" in variables,
                   reasoning=reasoning_markers_for(template))


@dataclass(frozen=True)
class ChatPlan:
    """The template's messages and extra variables, a forcing grammar, the output spec."""

    messages: list[dict[str, Any]]
    variables: dict[str, Any]
    grammar: str | None
    output: OutputSpec


def plan_chat(req: ChatCompletionRequest, style: ChatStyle) -> ChatPlan:
    """Everything a chat request needs beyond sampling (see the module docstring)."""
    tools = [t.model_dump(exclude_none=True) for t in req.tools or ()] if req.uses_tools \
        else []
    variables: dict[str, Any] = {}
    if tools and style.takes_tools:
        variables["tools"] = tools
    if req.reasoning_effort is not None:
        if style.thinking_switch:
            variables["enable_thinking"] = req.reasoning_effort != "none"
        if style.reads_effort:
            variables["reasoning_effort"] = req.reasoning_effort
    native = style.takes_tools or not _has_tool_history(req.messages)
    messages = [_message(m, style.parser, native=native) for m in req.messages]
    if tools and not style.takes_tools:
        messages = _with_system(messages, GENERIC_TOOL_PROMPT.format(
            tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools),
            example=style.parser.example()))
    output = OutputSpec(reasoning=style.reasoning, parser=style.parser if tools else None,
                        tool_names=frozenset(t["function"]["name"] for t in tools))
    return ChatPlan(messages, variables, tool_grammar(req, style.parser), output)


def tool_grammar(req: ChatCompletionRequest, parser: ToolCallParser) -> str | None:
    """The grammar that makes the model call a tool ("required") or the named one; None
    when the model chooses ("auto") or has no tools. Each call's arguments follow its
    function's JSON schema, so they always parse and validate; one call is written, or up
    to one per tool when ``parallel_tool_calls`` is true."""
    from localloom.engine.grammar import check_gbnf, json_schema_grammar

    forced = req.forced_tool
    if forced is None or not req.tools:
        return None
    chosen = [t for t in req.tools if forced in ("", t.function.name)]
    variants = [{
        "type": "object",
        "properties": {"name": {"const": t.function.name},
                       parser.arguments_key: _closed(t.function.parameters or {"type": "object"})},
        "required": ["name", parser.arguments_key],
        "additionalProperties": False,
    } for t in chosen]
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    call = json_schema_grammar(schema, where="tools[].function.parameters", param="tools")
    # The converter names its top rule "root"; the call syntax wraps it as one call.
    call = call.replace("root ::=", f"{_CALL_RULE} ::=", 1)
    max_calls = len(chosen) if req.parallel_tool_calls else 1
    gbnf = parser.grammar(_CALL_RULE, max_calls) + call
    check_gbnf(gbnf)
    return gbnf


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    # An object schema that does not say otherwise takes no properties besides its own
    # when a call is forced: a small model would otherwise invent keys until max_tokens.
    if schema.get("type") == "object" and "properties" in schema and \
            "additionalProperties" not in schema:
        return {**schema, "additionalProperties": False}
    return schema


def _has_tool_history(messages: list[ChatMessage]) -> bool:
    return any(m.role == "tool" or m.tool_calls for m in messages)


def _message(m: ChatMessage, parser: ToolCallParser, *, native: bool) -> dict[str, Any]:
    role = "system" if m.role == "developer" else m.role
    out: dict[str, Any] = {"role": role, "content": m.text()}
    if m.reasoning_content is not None:
        out["reasoning_content"] = m.reasoning_content
    if native:
        if m.tool_calls:
            # Hugging Face templates expect arguments as a mapping (vLLM passes them so too).
            out["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name, "arguments": _arguments(c.function.arguments)}}
                for c in m.tool_calls]
        if m.tool_call_id is not None:
            out["tool_call_id"] = m.tool_call_id
        if m.name is not None:
            out["name"] = m.name
        return out
    if m.tool_calls:  # the template knows no calls: write them as the model would
        calls = [ParsedCall(c.function.name, _arguments(c.function.arguments))
                 for c in m.tool_calls]
        out["content"] = "\n".join(filter(None, [out["content"], parser.render(calls)]))
    if role == "tool":
        out = {"role": "user",
               "content": f"<tool_response>\n{out['content']}\n</tool_response>"}
    return out


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"value": value}


def _with_system(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        first = messages[0]
        return [{**first, "content": f"{first['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]
