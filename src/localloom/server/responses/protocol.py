"""Wire models of OpenAI's Responses API (``POST /v1/responses``) and their mapping onto
the chat path: input items become chat messages, ``text.format`` a ``response_format``,
function tools the chat ``tools`` (passed through, not parsed here).

Example::

    req = ResponseRequest.parse({"model": "tiny", "input": "Hi", "instructions": "Be brief."})
    req.messages()        # [{"role": "system", ...}, {"role": "user", "content": "Hi"}]
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from localloom._validation import invalid_request
from localloom.errors import InvalidRequestError

__all__ = ["ResponseRequest", "TextConfig", "TextFormat"]

# Fields OpenAI's clients send that change nothing here (LocalLoom keeps no billing, no
# end-user ids, no background jobs): accepted and ignored.
_IGNORED = frozenset({"metadata", "user", "parallel_tool_calls", "truncation", "service_tier",
                      "include", "prompt_cache_key", "safety_identifier", "reasoning",
                      "stream_options", "top_logprobs", "background"})


class TextFormat(BaseModel):
    """``text.format``: plain text, any JSON, or JSON following a schema."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    """``text``: the output's format."""

    format: TextFormat = Field(default_factory=TextFormat)
    verbosity: str | None = None


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"'{where}' must be a string or a list of content parts.",
                                  param=where)
    texts = []
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text", "")))
        else:
            raise InvalidRequestError(
                f"'{where}[{n}]' is of type {kind!r}; LocalLoom's models read text only "
                "(input_text). Send images and files as text, or leave them out.",
                param=f"{where}[{n}]")
    return "".join(texts)


def _item_message(item: Any, n: int) -> dict[str, Any]:
    """One input item as a chat message (function calls and their outputs included)."""
    where = f"input[{n}]"
    if not isinstance(item, dict):
        raise InvalidRequestError(f"'{where}' must be an object (a message or an item).",
                                  param=where)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise InvalidRequestError(f"'{where}.role' must be user, system, developer or "
                                      "assistant.", param=f"{where}.role")
        return {"role": role, "content": _text_of(item.get("content", ""), f"{where}.content")}
    if kind == "function_call":
        call = {"id": item.get("call_id", ""), "type": "function",
                "function": {"name": item.get("name", ""),
                             "arguments": item.get("arguments", "{}")}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if kind == "function_call_output":
        return {"role": "tool", "tool_call_id": item.get("call_id", ""),
                "content": str(item.get("output", ""))}
    raise InvalidRequestError(
        f"'{where}' is of type {kind!r}; LocalLoom takes message, function_call and "
        "function_call_output items.", param=where)


def _chat_tool(tool: Any, n: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise InvalidRequestError(
            f"'tools[{n}]' is of type {kind!r}; only function tools are supported (no "
            "hosted tools such as web_search or file_search).", param=f"tools[{n}]")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict")
                if k in tool}
    return {"type": "function", "function": function}


class ResponseRequest(BaseModel):
    """``POST /v1/responses`` body (the fields LocalLoom serves)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    input: str | list[Any]
    instructions: str | None = None
    previous_response_id: str | None = None
    stream: bool = False
    store: bool = True
    text: TextConfig | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None  # LocalLoom extension (extra_body), as on the chat path

    @classmethod
    def parse(cls, data: dict[str, Any]) -> ResponseRequest:
        """Validate a body; errors become :class:`InvalidRequestError` naming the field."""
        kept = {k: v for k, v in data.items() if k not in _IGNORED}
        try:
            return cls.model_validate(kept)
        except ValidationError as exc:
            raise invalid_request(exc.errors(), model=cls) from exc

    def input_messages(self) -> list[dict[str, Any]]:
        """The new turn's messages (without ``instructions``), as chat messages."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        return [_item_message(item, n) for n, item in enumerate(self.input)]

    def chat_fields(self) -> dict[str, Any]:
        """Sampling, format and tools as chat-completions fields (only those set)."""
        out: dict[str, Any] = {k: v for k, v in (
            ("temperature", self.temperature), ("top_p", self.top_p),
            ("max_tokens", self.max_output_tokens), ("seed", self.seed)) if v is not None}
        fmt = self.text.format if self.text else None
        if fmt is not None and fmt.type == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif fmt is not None and fmt.type == "json_schema":
            out["response_format"] = {"type": "json_schema", "json_schema": {
                "name": fmt.name, "schema": fmt.schema_ or {}, "strict": fmt.strict}}
        if self.tools:
            out["tools"] = [_chat_tool(t, n) for n, t in enumerate(self.tools)]
        if isinstance(self.tool_choice, dict) and "name" in self.tool_choice:
            out["tool_choice"] = {"type": "function",
                                  "function": {"name": self.tool_choice["name"]}}
        elif self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        return out
