"""Wire models of Ollama's API (``/api/chat``, ``/api/generate``, ``/api/embed`` ...).

Requests convert to the engine's own request dicts (:meth:`OllamaChatRequest.engine_body`), so
sampling defaults stay the engine's; Ollama's ``options`` map onto LocalLoom's field names.

Example::

    req = OllamaChatRequest.model_validate({"model": "tiny", "messages": [...],
                                            "options": {"num_predict": 8}})
    body = req.engine_body()   # {"messages": [...], "max_tokens": 8}
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from localloom.errors import InvalidRequestError

__all__ = [
    "IGNORED_HEADER",
    "LOAD_HINTS",
    "OLLAMA_API_VERSION",
    "ModelDetails",
    "OllamaChatRequest",
    "OllamaDeleteRequest",
    "OllamaEmbedRequest",
    "OllamaGenerateRequest",
    "OllamaMessage",
    "OllamaModelRequest",
    "OllamaPullRequest",
    "Options",
]

# The Ollama API version reported by GET /api/version: clients (Open WebUI, Page Assist)
# gate features on it, so it names the Ollama release whose API LocalLoom follows.
OLLAMA_API_VERSION = "0.12.0"

# Every Ollama option falls in one class (docs/OLLAMA.md has the table); none is dropped
# silently.
# 1. Sampling options LocalLoom applies: Ollama option -> LocalLoom request field.
_OPTION_FIELDS = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
    "seed": "seed", "stop": "stop", "repeat_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
}
# 2. num_ctx (a field of Options): Ollama reloads the model with it; LocalLoom loads each model
#    once for all clients, so a request over the loaded context fails naming the field, and one
#    within it runs in the loaded context.
# 3. Ollama's load-time options (its api.Runner, "options which must be set when the model is
#    loaded into memory", and the Runner fields older Ollama releases had, which it ignores
#    now): LocalLoom's settings decide these for every client (LOCALLOOM_N_THREADS ...).
#    Accepted, not applied, and named in the answer's X-LocalLoom-Ignored-Options header.
LOAD_HINTS = frozenset({
    "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "numa", "low_vram",
    "f16_kv", "logits_all", "vocab_only", "use_mlock", "embedding_only", "num_gqa"})
# 4. Samplers LocalLoom does not have: accepted only at the value that leaves them off (or
#    equals what LocalLoom does), else a 400 naming the option and that value.
_NEUTRAL: dict[str, float] = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0, "repeat_last_n": 64}
# 5. Options with no effect on LocalLoom's answers (mirostat's rates while mirostat is off;
#    penalize_newline, which Ollama itself ignores now; num_keep, for the context shift
#    LocalLoom never does: an overlong prompt is an error): accepted, named in the header.
_INERT = frozenset({"mirostat_tau", "mirostat_eta", "penalize_newline", "num_keep"})
IGNORED_HEADER = "X-LocalLoom-Ignored-Options"


class Options(BaseModel):
    """Ollama's ``options``: each key applied, checked or named as not applied (never
    dropped silently); unknown keys and samplers LocalLoom lacks are refused."""

    model_config = ConfigDict(extra="allow")

    num_predict: int | None = None
    num_ctx: int | None = Field(default=None, ge=0)  # 0: unset (Ollama's omitempty)

    def engine_fields(self) -> dict[str, Any]:
        """The options as LocalLoom request fields (num_predict < 0: no limit)."""
        out: dict[str, Any] = {}
        if self.num_predict is not None and self.num_predict > 0:
            out["max_tokens"] = self.num_predict
        for key, value in (self.model_extra or {}).items():
            if key in _OPTION_FIELDS:
                if value is not None:
                    out[_OPTION_FIELDS[key]] = value
            elif key in _NEUTRAL:
                _check_neutral(key, value)
            elif key not in LOAD_HINTS and key not in _INERT:
                raise InvalidRequestError(
                    f"Unknown option '{key[:80]}'. Supported options: num_predict, num_ctx, "
                    f"{', '.join(sorted(_OPTION_FIELDS))}; accepted but not applied (load "
                    f"settings): {', '.join(sorted(LOAD_HINTS | _INERT))}. See "
                    "docs/OLLAMA.md.", param=f"options.{key[:80]}")
        return out

    def not_applied(self) -> list[str]:
        """The options accepted but not applied (the answer's X-LocalLoom-Ignored-Options)."""
        return sorted(k for k, v in (self.model_extra or {}).items()
                      if v is not None and (k in LOAD_HINTS or k in _INERT))


def _check_neutral(key: str, value: object) -> None:
    neutral = _NEUTRAL[key]
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)
                         and value == neutral):
        return
    what = ("LocalLoom's repeat-penalty window is 64 tokens" if key == "repeat_last_n" else
            f"LocalLoom has no {key} sampler")
    raise InvalidRequestError(
        f"Option '{key}' is {value!r}, but {what}: leave it out or send {neutral:g}. "
        "temperature, top_p, top_k and min_p shape sampling instead (docs/OLLAMA.md).",
        param=f"options.{key}")


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="", description="A model id, alias or Ollama name (llama3.2).")
    name: str | None = Field(default=None, description="Old spelling of 'model'.")

    @property
    def model_name(self) -> str:
        """``model``, or the older ``name``."""
        name = self.model or self.name or ""
        if not name:
            raise InvalidRequestError("'model' is required: name a model (GET /api/tags "
                                      "lists them).", param="model")
        return name


class OllamaModelRequest(_Base):
    """``POST /api/show`` body."""

    verbose: bool = False


class OllamaDeleteRequest(_Base):
    """``DELETE /api/delete`` body."""


class OllamaPullRequest(_Base):
    """``POST /api/pull`` body (streams progress unless ``stream`` is false)."""

    insecure: bool = False
    stream: bool = True


class _Generating(_Base):
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: Options | None = None
    stream: bool = True
    keep_alive: float | str | None = None
    think: bool | Literal["low", "medium", "high"] | None = None

    def _common(self) -> dict[str, Any]:
        body = self.options.engine_fields() if self.options else {}
        if self.think is not None:  # thinking off, on, or at a level (the chat path's effort)
            body["reasoning_effort"] = ("none" if self.think is False else
                                        "medium" if self.think is True else self.think)
        if self.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(self.format, dict):
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "format", "schema": self.format}}
        return body


def _no_images(images: list[str] | None, where: str) -> None:
    if images:
        raise InvalidRequestError(
            f"'{where}' carries images, and LocalLoom's models read text only. Send the "
            "request without images.", param=where)


class ToolCallFunction(BaseModel):
    """Ollama's ``tool_calls[].function``: arguments as an object."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(BaseModel):
    """One of an assistant message's ``tool_calls`` (``id``/``index``/``type``: Open WebUI and
    LangChain send the OpenAI call's; the id pairs the call with its ``tool`` message's
    ``tool_call_id``)."""

    model_config = ConfigDict(extra="forbid")

    function: ToolCallFunction
    id: str | None = None
    index: int | None = None
    type: Literal["function"] | None = None  # LangChain's and OpenAI's shape carry it


class OllamaMessage(BaseModel):
    """One message of ``/api/chat``."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    def to_openai(self, index: int, pending: list[str]) -> dict[str, Any]:
        """The message in the chat-completions shape (tool arguments as a JSON string).

        Ollama's messages carry no call ids: an assistant's calls get ids here, queued in
        ``pending``, and each following ``tool`` message answers the next one."""
        _no_images(self.images, f"messages[{index}].images")
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.thinking and self.role == "assistant":
            out["reasoning_content"] = self.thinking
        if self.tool_calls:
            ids = [c.id or f"call_{index}_{n}" for n, c in enumerate(self.tool_calls)]
            pending[:] = ids
            out["tool_calls"] = [
                {"id": call_id, "type": "function",
                 "function": {"name": c.function.name,
                              "arguments": json.dumps(c.function.arguments)}}
                for call_id, c in zip(ids, self.tool_calls, strict=True)]
        if self.role == "tool":
            if self.tool_call_id and self.tool_call_id in pending:
                pending.remove(self.tool_call_id)
            out["tool_call_id"] = (self.tool_call_id or (pending.pop(0) if pending
                                                         else f"call_{index}"))
            if self.tool_name:
                out["name"] = self.tool_name
        return out


class OllamaChatRequest(_Generating):
    """``POST /api/chat`` body."""

    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    # Open WebUI moves a model's system prompt and max_tokens to the top level of /api/chat,
    # where Ollama drops them unread; LocalLoom applies them (a leading system message,
    # options.num_predict when the options have none).
    system: str | None = None
    num_predict: int | None = None

    def engine_body(self) -> dict[str, Any]:
        """The chat-completions body for the engine (tools passed through unchanged)."""
        body = self._common()
        if self.num_predict is not None and self.num_predict > 0:
            body.setdefault("max_tokens", self.num_predict)
        pending: list[str] = []
        body["messages"] = [m.to_openai(i, pending) for i, m in enumerate(self.messages)]
        if self.system and body["messages"]:
            body["messages"].insert(0, {"role": "system", "content": self.system})
        if self.tools:
            body["tools"] = self.tools
        return body


class OllamaGenerateRequest(_Generating):
    """``POST /api/generate`` body."""

    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: list[str] | None = None
    context: list[int] | None = None

    def engine_body(self) -> dict[str, Any]:
        """A chat body (system + prompt), or a completion body when ``raw`` is true."""
        _no_images(self.images, "images")
        for field, what in (("suffix", "fill-in-the-middle"), ("template", "a prompt template"),
                            ("context", "a previous answer's token context")):
            if getattr(self, field):
                raise InvalidRequestError(
                    f"'{field}' ({what}) is not supported. Leave it out; to continue a "
                    "conversation, use /api/chat with the earlier messages.", param=field)
        body = self._common()
        if self.raw:
            body["prompt"] = self.prompt
            return body
        messages = [{"role": "system", "content": self.system}] if self.system else []
        body["messages"] = [*messages, {"role": "user", "content": self.prompt}]
        return body


class OllamaEmbedRequest(_Base):
    """``POST /api/embed`` body (and the older ``/api/embeddings`` with ``prompt``)."""

    input: str | list[str] | None = None
    prompt: str | None = None
    truncate: bool = True
    dimensions: int | None = None
    options: Options | None = None
    keep_alive: float | str | None = None

    def texts(self) -> list[str]:
        """The texts to embed, one or many."""
        value = self.input if self.input is not None else self.prompt
        if value is None:
            raise InvalidRequestError("'input' is required: a string or a list of strings.",
                                      param="input")
        return [value] if isinstance(value, str) else value


class ModelDetails(BaseModel):
    """Ollama's ``details`` of a model."""

    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""
