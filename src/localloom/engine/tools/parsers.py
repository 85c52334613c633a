"""Tool-call parsers: how each model family writes a call, read back into calls.

One parser per syntax, registered by name in a :class:`ToolParserRegistry` (a duplicate name
is an error), and chosen once per loaded model from its chat template and architecture
(:meth:`ToolParserRegistry.for_model`). Each parser knows three things about its syntax:
where a call begins (``markers`` anywhere, ``leading`` only at the start of an answer), how
to read calls out of a whole answer (:meth:`ToolCallParser.parse`), and the GBNF grammar
that makes a model write calls in it (:meth:`ToolCallParser.grammar`).

=================  ===============================================  =====================
parser             syntax                                           models
=================  ===============================================  =====================
``hermes``         ``<tool_call>{"name": .., "arguments": ..}</tool_call>``  Hermes 2/3, Qwen 2.5/3,
                                                                    the generic prompt
``llama3_json``    ``<|python_tag|>{"name": .., "parameters": ..}``  Llama 3.1-3.3
``mistral``        ``[TOOL_CALLS][{...}]`` or ``[TOOL_CALLS]name[ARGS]{...}``  Mistral, Mixtral
``phi4_mini``      ``functools[{...}]``                             Phi-4-mini
``json_block``     a bare JSON call or a fenced ```json block       Gemma and others
=================  ===============================================  =====================

Example::

    parser = builtin_parsers().for_model(template, "qwen2")
    content, calls = parser.parse('<tool_call>\\n{"name": "f", "arguments": {}}\\n</tool_call>')
"""

from __future__ import annotations

import functools
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from localloom.errors import ConfigError

__all__ = [
    "HermesParser",
    "JsonBlockParser",
    "Llama3JsonParser",
    "MistralParser",
    "ParsedCall",
    "Phi4MiniParser",
    "ToolCallParser",
    "ToolParserRegistry",
    "builtin_parsers",
]

_DECODER = json.JSONDecoder()
# GBNF literals between parallel calls.
_NEWLINE = '"\\n"'
_SEMICOLON = '"; "'
_COMMA = '", "'


@dataclass(frozen=True)
class ParsedCall:
    """A call read from model output: the function's name and its arguments object."""

    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON text OpenAI's ``function.arguments`` carries."""
        return json.dumps(self.arguments, ensure_ascii=False)


def call_from(value: Any) -> ParsedCall | None:
    """A call from a decoded JSON value ``{"name": .., "arguments"|"parameters": {..}}``
    (arguments may also be a JSON text of an object); None for anything else."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict) and "name" not in value:
        value = value["function"]  # OpenAI's own shape, which some models echo
    name = value.get("name")
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        return None
    return ParsedCall(name, args)


def json_values(text: str, start: int = 0) -> Iterator[tuple[Any, int, int]]:
    """Consecutive JSON values in ``text`` from ``start``, each with its span; separators
    between them may be whitespace, ``,`` or ``;``. Stops at the first non-JSON text."""
    i = start
    while True:
        while i < len(text) and text[i] in " \t\r\n,;":
            i += 1
        if i >= len(text) or text[i] not in "{[":
            return
        try:
            value, end = _DECODER.raw_decode(text, i)
        except ValueError:
            return
        yield value, i, end
        i = end


def calls_in(value: Any) -> list[ParsedCall] | None:
    """The calls a JSON value holds (one call, or a list of calls); None if it is not one."""
    items = value if isinstance(value, list) else [value]
    calls = [call_from(item) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


class ToolCallParser(ABC):
    """One model family's call syntax (see the module docstring for the built-ins)."""

    name: ClassVar[str]
    # Text that begins a call anywhere in an answer; a stream holds it back until it knows.
    markers: ClassVar[tuple[str, ...]] = ()
    # Text that begins a call only at the very start of an answer (bare JSON formats).
    leading: ClassVar[tuple[str, ...]] = ()
    # The key the family's calls hold their arguments under.
    arguments_key: ClassVar[str] = "arguments"

    @classmethod
    def matches(cls, template: str, architecture: str) -> bool:
        """Whether this syntax is the one the model's template (or family) uses."""
        return False

    @abstractmethod
    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        """(the answer's text outside the calls, the calls) of a whole answer."""

    def complete_upto(self, text: str) -> int:
        """How much of ``text`` (which begins with a call) holds only finished calls, so a
        stream can send them before the answer ends; 0 when only the end can tell."""
        return 0

    @abstractmethod
    def grammar(self, call_rule: str, max_calls: int) -> str:
        """A GBNF ``root`` rule that writes 1..``max_calls`` calls in this syntax, each
        ``call_rule`` (a JSON object with "name" and :attr:`arguments_key`)."""

    @abstractmethod
    def example(self) -> str:
        """How one call looks, for the generic tool prompt."""

    def render(self, calls: list[ParsedCall]) -> str:
        """Earlier calls written back into the history, for templates without tool support."""
        return "\n".join(self._one(c) for c in calls)

    def _one(self, call: ParsedCall) -> str:
        return json.dumps({"name": call.name, self.arguments_key: call.arguments},
                          ensure_ascii=False)


def _repeat(first: str, sep: str, max_calls: int) -> str:
    if max_calls <= 1:
        return first
    return f"{first} ({sep} {first}){{0,{max_calls - 1}}}"


class HermesParser(ToolCallParser):
    """``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`` (several in a row
    for parallel calls): Hermes 2 Pro/3, Qwen 2.5 and Qwen 3, and LocalLoom's generic prompt.
    A last block the model ended without its closing tag counts when its JSON is whole."""

    name = "hermes"
    markers = ("<tool_call>",)
    _BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.S)

    @classmethod
    def matches(cls, template: str, architecture: str) -> bool:
        return "<tool_call>" in template or (
            not template and architecture.startswith(("qwen2", "qwen3")))

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        calls: list[ParsedCall] = []
        kept: list[str] = []
        last = 0
        for match in self._BLOCK.finditer(text):
            try:
                found = calls_in(json.loads(match.group(1)))
            except ValueError:
                found = None
            if found is None:
                continue
            kept.append(text[last:match.start()])
            last = match.end()
            calls += found
        kept.append(text[last:])
        return "".join(kept).strip() if calls else text, calls

    def complete_upto(self, text: str) -> int:
        end = text.rfind("</tool_call>")
        return end + len("</tool_call>") if end >= 0 else 0

    def grammar(self, call_rule: str, max_calls: int) -> str:
        one = f'"<tool_call>\\n" {call_rule} "\\n</tool_call>"'
        return "root ::= " + _repeat(one, _NEWLINE, max_calls) + "\n"

    def example(self) -> str:
        return ('<tool_call>\n{"name": "<function name>", "arguments": {<the arguments as '
                'JSON>}}\n</tool_call>')

    def _one(self, call: ParsedCall) -> str:
        return f"<tool_call>\n{super()._one(call)}\n</tool_call>"


class Llama3JsonParser(ToolCallParser):
    """Llama 3.1-3.3's JSON tool calls: ``{"name": "f", "parameters": {...}}``, optionally
    after ``<|python_tag|>``, several separated by ``;``; only at the start of an answer."""

    name = "llama3_json"
    markers = ("<|python_tag|>",)
    leading = ("{",)
    arguments_key = "parameters"

    @classmethod
    def matches(cls, template: str, architecture: str) -> bool:
        return "<|python_tag|>" in template or ("<|eot_id|>" in template and "tools" in template)

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        head, tag, body = text.partition("<|python_tag|>")
        if not tag:
            head, body = "", text
        calls: list[ParsedCall] = []
        end = 0
        for value, _, stop in json_values(body):
            found = calls_in(value)
            if found is None:
                break
            calls += found
            end = stop
        if not calls:
            return text, []
        return (head + body[end:]).strip(), calls

    def grammar(self, call_rule: str, max_calls: int) -> str:
        return "root ::= " + _repeat(call_rule, _SEMICOLON, max_calls) + "\n"

    def example(self) -> str:
        return '{"name": "<function name>", "parameters": {<the arguments as JSON>}}'


class MistralParser(ToolCallParser):
    """Mistral's ``[TOOL_CALLS][{"name": "f", "arguments": {...}}]`` and the newer
    ``[TOOL_CALLS]f[ARGS]{...}``. ``[TOOL_CALLS]`` is a control token that the text of an
    answer leaves out, so a bare JSON list of calls at the start is read as calls too."""

    name = "mistral"
    markers = ("[TOOL_CALLS]",)
    leading = ("[{",)
    _NAMED = re.compile(r"\s*([A-Za-z0-9_.\-]+)\[ARGS\]")

    @classmethod
    def matches(cls, template: str, architecture: str) -> bool:
        return "[TOOL_CALLS]" in template

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        head, tag, body = text.partition("[TOOL_CALLS]")
        if not tag:
            head, body = "", text
        calls: list[ParsedCall] = []
        rest = body
        for part in body.split("[TOOL_CALLS]"):
            named = self._NAMED.match(part)
            if named:
                value = next(json_values(part, named.end()), None)
                args = value[0] if value else None
                if not isinstance(args, dict):
                    break
                calls.append(ParsedCall(named.group(1), args))
                rest = part[value[2]:] if value else ""
                continue
            value = next(json_values(part), None)
            found = calls_in(value[0]) if value else None
            if found is None or value is None:
                break
            calls += found
            rest = part[value[2]:]
        if not calls:
            return text, []
        return (head + rest).strip(), calls

    def grammar(self, call_rule: str, max_calls: int) -> str:
        return 'root ::= "[" ' + _repeat(call_rule, _COMMA, max_calls) + ' "]"\n'

    def example(self) -> str:
        return '[TOOL_CALLS][{"name": "<function name>", "arguments": {<the arguments>}}]'

    def render(self, calls: list[ParsedCall]) -> str:
        return "[TOOL_CALLS]" + json.dumps(
            [{"name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False)


class Phi4MiniParser(ToolCallParser):
    """Phi-4-mini's ``functools[{"name": "f", "arguments": {...}}, ...]``."""

    name = "phi4_mini"
    markers = ("functools[",)

    @classmethod
    def matches(cls, template: str, architecture: str) -> bool:
        return "functools[" in template

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        at = text.find("functools[")
        if at < 0:
            return text, []
        value = next(json_values(text, at + len("functools")), None)
        found = calls_in(value[0]) if value else None
        if found is None or value is None:
            return text, []
        return (text[:at] + text[value[2]:]).strip(), found

    def grammar(self, call_rule: str, max_calls: int) -> str:
        return 'root ::= "functools[" ' + _repeat(call_rule, _COMMA, max_calls) + ' "]"\n'

    def example(self) -> str:
        return 'functools[{"name": "<function name>", "arguments": {<the arguments as JSON>}}]'

    def render(self, calls: list[ParsedCall]) -> str:
        return "functools" + json.dumps(
            [{"name": c.name, "arguments": c.arguments} for c in calls], ensure_ascii=False)


class JsonBlockParser(ToolCallParser):
    """A JSON call (or a list of them) as the whole answer, or in fenced ```json /
    ```tool_call blocks: what Gemma and other models without a call syntax of their own
    write when a prompt describes the JSON form."""

    name = "json_block"
    markers = ("```json", "```tool_call")
    leading = ("{", "[{")
    _FENCE = re.compile(r"```(?:json|tool_call)\s*\n?(.*?)(?:```|\Z)", re.S)

    @classmethod
    def matches(cls, template: str, architecture: str) -> bool:
        return "<start_of_turn>" in template or architecture.startswith("gemma")

    def parse(self, text: str) -> tuple[str, list[ParsedCall]]:
        calls: list[ParsedCall] = []
        kept: list[str] = []
        last = 0
        for match in self._FENCE.finditer(text):
            values = list(json_values(match.group(1)))
            found = [c for v, _, _ in values for c in calls_in(v) or ()]
            if not found:
                continue
            kept.append(text[last:match.start()])
            last = match.end()
            calls += found
        if calls:
            kept.append(text[last:])
            return "".join(kept).strip(), calls
        end = 0
        for value, _, stop in json_values(text):
            found_here = calls_in(value)
            if found_here is None:
                break
            calls += found_here
            end = stop
        if not calls or text[:1] not in "{[ \n\t":
            return text, []
        return text[end:].strip(), calls

    def grammar(self, call_rule: str, max_calls: int) -> str:
        if max_calls <= 1:
            return f"root ::= {call_rule}\n"
        return 'root ::= "[" ' + _repeat(call_rule, _COMMA, max_calls) + ' "]"\n'

    def example(self) -> str:
        return '{"name": "<function name>", "arguments": {<the arguments as JSON>}}'


class ToolParserRegistry:
    """Parsers by name; :meth:`for_model` picks one for a model. Duplicate names are refused.

    Example::

        registry = ToolParserRegistry()
        registry.register(HermesParser)
        registry.get("hermes")
    """

    def __init__(self, fallback: str = "hermes") -> None:
        self._parsers: dict[str, type[ToolCallParser]] = {}
        self.fallback = fallback

    def register(self, parser: type[ToolCallParser]) -> type[ToolCallParser]:
        """Add a parser class (usable as a class decorator)."""
        if parser.name in self._parsers:
            raise ConfigError(f"A tool-call parser named '{parser.name}' is already "
                              "registered; give the new one another name.")
        self._parsers[parser.name] = parser
        return parser

    def get(self, name: str) -> ToolCallParser:
        """A parser by name."""
        try:
            return self._parsers[name]()
        except KeyError:
            raise ConfigError(f"There is no tool-call parser '{name}'; known: "
                              f"{', '.join(sorted(self._parsers))}.") from None

    @property
    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._parsers)

    def for_model(self, template: str | None, architecture: str | None) -> ToolCallParser:
        """The first parser whose syntax the chat template (or the architecture) shows;
        the fallback (Hermes, which the generic prompt teaches) otherwise."""
        for cls in self._parsers.values():
            if cls.matches(template or "", (architecture or "").lower()):
                return cls()
        return self.get(self.fallback)


@functools.cache
def builtin_parsers() -> ToolParserRegistry:
    """The registry of the built-in parsers (most specific syntax first)."""
    registry = ToolParserRegistry()
    for parser in (HermesParser, MistralParser, Llama3JsonParser, Phi4MiniParser,
                   JsonBlockParser):
        registry.register(parser)
    return registry
