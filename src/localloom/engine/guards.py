"""Checks on a request body that protect the server process before the engine sees it.

Each check turns an input that would crash or stall the process into a 400:

* Text that is not valid Unicode (a lone surrogate, written ``"\\ud800"`` in JSON) cannot be
  encoded for the tokenizer.
* A JSON schema in ``response_format`` becomes a llama.cpp grammar in which a repetition
  bound (``maxLength``, ``maxItems``, ``{m,n}`` in a pattern...) of n is n nested rules:
  ``maxLength: 20000`` overflows the native stack of the grammar code and kills the
  process, and ``minLength: 100000000`` takes minutes and gigabytes to build.

Example::

    data = await request.json()
    check_body(data)        # raises InvalidRequestError naming the field
"""

from __future__ import annotations

import json
import re
from typing import Any

from localloom.errors import InvalidRequestError

__all__ = ["MAX_MESSAGES", "MAX_SCHEMA_REPEAT", "MAX_SCHEMA_TOTAL", "check_body",
           "check_schema"]

# llama.cpp compiles bounds up to about this size; beyond it compiling fails (about 3,000)
# or crashes (about 20,000).
MAX_SCHEMA_REPEAT = 1000
MAX_SCHEMA_TOTAL = 20_000
MAX_MESSAGES = 10_000
_BOUND_KEYS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties",
                         "maxProperties", "minContains", "maxContains"})
_QUANTIFIER_RE = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def check_body(data: dict[str, Any]) -> None:
    """Raise :class:`InvalidRequestError` for text or schemas the engine cannot handle safely."""
    messages = data.get("messages")
    # Validating each message holds the interpreter lock: 400,000 of them froze the server
    # for seconds before any context check could refuse them.
    if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
        raise InvalidRequestError(
            f"'messages' has {len(messages)} items; at most {MAX_MESSAGES} are accepted (and "
            "every message takes tokens of the context). Send fewer, longer messages.",
            param="messages")
    for key, value in data.items():
        _valid_unicode(key, value)
    response_format = data.get("response_format")
    if isinstance(response_format, dict):
        json_schema = response_format.get("json_schema")
        if isinstance(json_schema, dict):
            _bounded_schema(json_schema.get("schema"))
    tools = data.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if isinstance(function, dict):
                _bounded_schema(function.get("parameters"),
                                f"tools[{i}].function.parameters", "tools")


def check_schema(schema: Any, *, where: str = "response_format.json_schema.schema",
                 param: str = "response_format") -> None:
    """Raise :class:`InvalidRequestError` for a JSON schema whose grammar would be unsafe.

    The engine calls this too, so library callers get the same protection as the server.
    ``where``/``param`` name the schema in the message (a tool's parameters, say).
    """
    _bounded_schema(schema, where, param)


def _valid_unicode(key: str, value: Any) -> None:
    try:
        key.encode("utf-8")
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        param = key if key.isprintable() and key.isascii() else None
        raise InvalidRequestError(
            f"'{param or 'a field name'}' contains text that is not valid Unicode (a lone "
            "surrogate such as \\ud800). Send UTF-8 text.", param=param) from exc


def _bounded_schema(schema: Any, where: str = "response_format.json_schema.schema",
                    param: str = "response_format") -> None:
    stack = [schema]
    total = 0  # every bound becomes that many grammar groups: their sum is the grammar's size
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _BOUND_KEYS and _too_big(value):
                _refuse(f"'{key}' of {value}", where, param)
            if key in _BOUND_KEYS and isinstance(value, int) and not isinstance(value, bool):
                total += max(0, value)
                if total > MAX_SCHEMA_TOTAL:
                    raise InvalidRequestError(
                        f"'{where}' has length and count bounds "
                        f"adding up to over {MAX_SCHEMA_TOTAL}; its grammar would be too large "
                        "to compile. Lower the bounds or use fewer bounded fields.",
                        param=param)
            elif key == "pattern" and isinstance(value, str):
                for match in _QUANTIFIER_RE.finditer(value):
                    if any(_too_big(int(n)) for n in match.groups() if n):
                        _refuse(f"the repetition {match.group(0)} in 'pattern'", where, param)
            if isinstance(value, dict | list):
                stack.append(value)


def _too_big(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and (
        value != value or value > MAX_SCHEMA_REPEAT)


def _refuse(what: str, where: str, param: str) -> None:
    raise InvalidRequestError(
        f"'{where}' has {what}; bounds above {MAX_SCHEMA_REPEAT} "
        "cannot be compiled into a grammar. Lower the bound or leave it out.",
        param=param)
