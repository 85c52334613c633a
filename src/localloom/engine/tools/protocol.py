"""OpenAI's tool-calling wire shapes: tool definitions, tool choice, calls in and out.

Requests carry ``tools`` (function definitions with a JSON schema each), ``tool_choice``
(``"none"``, ``"auto"``, ``"required"`` or one named function) and assistant messages with
``tool_calls``; answers carry ``message.tool_calls`` and, streamed, ``delta.tool_calls``
(``index`` first, then the id and name, then the arguments in pieces).

Example::

    tool = ToolDefinition.model_validate({"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object"}}})
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

__all__ = [
    "DeltaFunctionCall",
    "DeltaToolCall",
    "FunctionCall",
    "FunctionDefinition",
    "NamedFunction",
    "NamedToolChoice",
    "ReasoningEffort",
    "ToolCall",
    "ToolChoice",
    "ToolDefinition",
]

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]


class FunctionDefinition(BaseModel):
    """A function the model may call: its name, what it does, its parameters' schema."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(BaseModel):
    """One entry of ``tools``: ``{"type": "function", "function": {...}}``."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(BaseModel):
    """``{"name": ...}`` of a named tool choice."""

    model_config = ConfigDict(extra="ignore")

    name: str


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming the one function the model must call."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(BaseModel):
    """A call's function: its name and its arguments as a JSON text."""

    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str


class ToolCall(BaseModel):
    """One call the model made (in answers) or made earlier (in the history)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def _without_none(handler: SerializerFunctionWrapHandler, model: BaseModel) -> dict[str, Any]:
    # Streamed pieces leave out what they do not carry: the openai SDK's stream helper
    # merges deltas key by key, and a null 'type' would overwrite "function".
    data: dict[str, Any] = handler(model)
    return {k: v for k, v in data.items() if v is not None}


class DeltaFunctionCall(BaseModel):
    """The name (first piece only) or the next piece of the arguments."""

    name: str | None = None
    arguments: str | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_none(handler, self)


class DeltaToolCall(BaseModel):
    """A streamed piece of call number ``index``: id, type and name come first."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunctionCall | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_none(handler, self)
